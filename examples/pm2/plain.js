// A plain `http` server, no framework, PM2's wait_ready style.
const http = require('http')
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/slow')) {
    const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms')) || 1000
    return setTimeout(() => res.end('slow ' + process.pid), ms)
  }
  res.end('Hello World!')
})
server.listen(3000, '127.0.0.1', () => process.send('ready'))
process.on('SIGINT', () => server.close(() => process.exit(0)))
