#!/usr/bin/env node
// Start kinesalite bound to 127.0.0.1 only (its own CLI listens on every interface).
// Takes kinesalite's CLI flags (--createStreamMs 0 ...); --port 0 picks a free port.
// Prints "listening <port>" on stdout once the server accepts connections.
'use strict'

const kinesalite = require('kinesalite')

const options = {}
const args = process.argv.slice(2)
for (let i = 0; i < args.length; i++) {
  const match = /^--([A-Za-z]+)(?:=(.*))?$/.exec(args[i])
  if (!match) throw new Error(`unexpected argument: ${args[i]}`)
  let value = match[2]
  if (value === undefined) value = (i + 1 < args.length && !args[i + 1].startsWith('--')) ? args[++i] : true
  options[match[1]] = (typeof value === 'string' && /^\d+$/.test(value)) ? Number(value) : value
}

const port = options.port === undefined ? 4567 : options.port
const server = kinesalite(options).listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`)
})
server.on('error', (err) => {
  process.stderr.write(`kinesalite: ${err.message}\n`)
  process.exit(1)
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)))
