import { expect, it } from 'vitest'
import { escapeXml, xmlElements, xmlText } from '../../src/stores/s3-client'

it('S3 XML: a key escaped for DeleteObjects reads back the same, numeric entities and a carriage return too', () => {
  const key = `data/app/a&b<c>d"e'f\rg`
  expect(escapeXml(key)).toBe('data/app/a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;g')
  expect(xmlText(`<Error><Key>${escapeXml(key)}</Key></Error>`, 'Key')).toBe(key)
  expect(xmlText('<Key>&#x1F600;&#233;&unknown;</Key>', 'Key')).toBe('😀é&unknown;')
  expect(
    xmlElements('<Contents><Key>a</Key></Contents><Contents><Key>&lt;/Key&gt;</Key></Contents>', 'Contents').map((object) => xmlText(object, 'Key')),
  ).toEqual(['a', '</Key>'])
})
