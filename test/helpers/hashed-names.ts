/** Names the push reads as content-hashed: what webpack, Vite and esbuild write. */
export const HASHED_NAMES = [
  'js/main.3f2a1b9c0d.js', // webpack [name].[contenthash]
  '453.8f3c2a91e0b7d6c4a5f1.js',
  'App.caa9037c.js',
  'assets/index-BxY7_a9Q.js', // Vite [name]-[hash]
  'assets/index-DhTRlqEC.css',
  'main-B-RNKoMk.css',
  'js/lazy-BFeHIACX.js',
  'js/main-MMO2JUH2.js', // esbuild
]

/** Names it reads as not hashed, so never `immutable` by their name alone. */
export const UNHASHED_NAMES = [
  // fec-like names: words, not hashes. A wrongly immutable file is served stale for a year.
  'fonts/OpenSans-SemiBold.woff2',
  'fonts/Roboto-ExtraBold.woff2',
  'img/BackgroundImage.png',
  'img/logo.BackgroundImage.png',
  'js/vendor-LegacyCode.js',
  'my-component.js',
  'widgets/date-picker-long.js',
  'App-Component.js',
  'logo café.svg',
  'icons.material24.svg',
  // Ambiguous, so short: all letters upper case, all digits, words a hash may spell.
  'main-LAIVXYRB.css',
  'assets/logo café.44389336.svg',
  'js/chunks/lazy-Bsle-cxw.js',
]
