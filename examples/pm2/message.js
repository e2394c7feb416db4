// PM2's shutdown_with_message: the app stops on the `shutdown` message, not on a signal.
const http = require('http')
const server = http.createServer((req, res) => res.end('Hello World!'))
server.listen(3000, () => process.send('ready'))
process.on('message', (msg) => {
  if (msg === 'shutdown') {
    console.log('got the shutdown message')
    server.close(() => process.exit(0))
  }
})
