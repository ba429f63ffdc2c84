const font = new URL('./fonts/OpenSans-SemiBold.woff2', import.meta.url)
document.fonts.add(new FontFace('Open Sans', `url(${font})`, { weight: '600' }))
import('./RootApp.js').then(({ default: render }) => render(document.body))
