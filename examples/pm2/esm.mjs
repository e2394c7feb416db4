// An ES module app.
import express from 'express'
const app = express()
app.get('/', (req, res) => res.send('Hello World!'))
app.get('/slow', (req, res) => setTimeout(() => res.send('slow ' + process.pid), Number(req.query.ms) || 1000))
app.listen({ port: 3000 }, () => process.send('ready'))
