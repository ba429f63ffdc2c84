import type { S3Client } from '@aws-sdk/client-s3'
import { getSmithyContext } from '@smithy/core'
import { toEndpointV1 } from '@smithy/core/endpoints'
import { deserializerMiddlewareOption, getSchemaSerdePlugin, operation, serializerMiddlewareOption } from '@smithy/core/schema'

type Config = S3Client['config']
type Context = Parameters<typeof getSmithyContext>[0]
/** The two calls of the client's protocol that the serde middleware make (its union type is not callable). */
interface Protocol {
  serializeRequest(operation: unknown, input: unknown, context: Config): Promise<unknown>
  deserializeResponse(operation: unknown, context: Config, response: unknown): Promise<unknown>
}
/** A deserialize-step middleware, as the SDK's serde plugin adds it. */
type Deserializer = (next: (args: unknown) => Promise<unknown>, context: Context) => (args: unknown) => Promise<unknown>

/**
 * What the SDK's serializer and deserializer hand its protocol, `{ ...config, ...context }`, without
 * the copy: the context's own properties over the client config as prototype. The protocol only
 * reads them; the copy of a 67-property config in dictionary mode, twice a request, was a third of
 * the SDK's CPU per request, and most of its garbage.
 */
const serdeContext = (config: Config, context: Context, extra?: object) => Object.assign(Object.create(config) as Config, context, extra)

/** The operation's schema, as the SDK's serde middleware reads it from the context. */
function operationOf(context: Context) {
  const [, namespace, name, traits, input, output] = (getSmithyContext(context).operationSchema ?? []) as never[]
  return operation(namespace, name, traits, input, output)
}

/**
 * The SDK's own deserializer middleware, its protocol failing with `error`: it adds to the error
 * what the SDK adds to any that a response's deserialization throws (the response as `$response`,
 * which the skew correction and the region redirect read; `$metadata` where there is none). Made
 * only on a failure.
 */
function sdkFailedDeserializer(error: unknown): Deserializer {
  const failing = { protocol: { setSerdeContext() {}, deserializeResponse: () => Promise.reject(error) } }
  let deserializer: Deserializer | undefined
  getSchemaSerdePlugin(failing as never).applyToStack({
    add: (middleware: Deserializer, options: { name?: string }) => {
      if (options.name === deserializerMiddlewareOption.name) deserializer = middleware
    },
  } as never)
  if (!deserializer) throw error
  return deserializer
}

/** The SDK's schema serde middleware of `client`, replaced by the same calls of its protocol without the config copies. */
export function serdeWithoutConfigCopies(client: S3Client): void {
  const { config } = client
  const protocol = config.protocol as unknown as Protocol
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const { endpointV2 } = context
      const endpoint = endpointV2 ? async () => toEndpointV1(endpointV2) : config.endpoint
      const request = await protocol.serializeRequest(operationOf(context), args.input, serdeContext(config, context, { endpoint }))
      return next({ ...args, request })
    },
    serializerMiddlewareOption,
  )
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const { response } = await next(args)
      try {
        return { response, output: (await protocol.deserializeResponse(operationOf(context), serdeContext(config, context), response)) as never }
      } catch (error) {
        return sdkFailedDeserializer(error)(async () => ({ response }), context)(args) as never
      }
    },
    deserializerMiddlewareOption,
  )
}
