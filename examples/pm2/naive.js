// The articles' first app.js: no signal handler, no readiness message.
const express = require('express')
const app = express()
const port = 3000
app.get('/', function(req, res) {
  res.send('Hello World!')
})
app.get('/slow', function(req, res) {
  setTimeout(function() { res.send('slow ' + process.pid) }, Number(req.query.ms) || 1000)
})
app.listen(port, function() {
  console.log(`application is listening on port ${port}...`)
})
