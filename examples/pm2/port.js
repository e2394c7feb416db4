// An app that takes its port from the environment, as most do.
const express = require('express')
const app = express()
app.get('/', (req, res) => res.send(`instance ${process.env.NODE_APP_INSTANCE}`))
app.get('/slow', (req, res) => setTimeout(() => res.send('slow ' + process.pid), Number(req.query.ms) || 1000))
app.listen(process.env.PORT, () => process.send('ready'))
