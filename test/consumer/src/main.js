document.body.textContent = 'consumer'
