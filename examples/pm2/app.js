// The graceful app.js of the PM2 articles (../shared/seeds), with only their typos fixed
// (straight quotes; server.close() on the server app.listen returned, as an Express app has no
// close()) and a /slow route added. It runs unchanged under PM2 and under sysmgr.
const express = require('express')
const app = express()
const port = 3000
let isDisableKeepAlive = false
app.use(function(req, res, next) {
  if (isDisableKeepAlive) {
    res.set('Connection', 'close')
  }
  next()
})
app.get('/', function(req, res) {
  res.send('Hello World!')
})
app.get('/slow', function(req, res) {
  setTimeout(function() { res.send('slow ' + process.pid) }, Number(req.query.ms) || 1000)
})
const server = app.listen(port, function() {
  process.send('ready')
  console.log(`application is listening on port ${port}...`)
})
process.on('SIGINT', function () {
  isDisableKeepAlive = true
  server.close(function () {
  console.log('server closed')
  process.exit(0)
  })
})
