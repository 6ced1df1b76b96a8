#!/usr/bin/env node
// Start kinesalite bound to 127.0.0.1 only (its own CLI listens on every interface).
// Takes kinesalite's CLI flags (--createStreamMs 0 ...); --port 0 picks a free port.
// Prints "listening <port>" on stdout once the server accepts connections.
//
// --getRecordsLog <file> (off by default) appends one JSON line per GetRecords call the server handles,
//   {"time": <epoch seconds, sub-millisecond>, "stream": "...", "shardId": "shardId-000000000000"},
// so a test can count the calls each shard receives, as Kinesis counts them against its quota. Stream and
// shard come from the call's shard iterator (kinesalite encrypts them into it with a fixed key); a call
// whose iterator does not decode is logged with null ones (kinesalite rejects it, but it was still a call).
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const { performance } = require('perf_hooks')

const options = {}
const args = process.argv.slice(2)
for (let i = 0; i < args.length; i++) {
  const match = /^--([A-Za-z]+)(?:=(.*))?$/.exec(args[i])
  if (!match) throw new Error(`unexpected argument: ${args[i]}`)
  let value = match[2]
  if (value === undefined) value = (i + 1 < args.length && !args[i + 1].startsWith('--')) ? args[++i] : true
  options[match[1]] = (typeof value === 'string' && /^\d+$/.test(value)) ? Number(value) : value
}

if (options.getRecordsLog !== undefined) {
  if (typeof options.getRecordsLog !== 'string') throw new Error('--getRecordsLog needs a file path')
  logGetRecords(options.getRecordsLog)
  delete options.getRecordsLog
}

// Wrap kinesalite's GetRecords action (actions/getRecords.js of the pinned 3.3.3) before kinesalite loads
// it, so every call that reaches the action is logged, whatever the wire format (JSON from boto3, CBOR
// from the Java SDK): the action gets the decoded request.
function logGetRecords (file) {
  const db = require('kinesalite/db')
  const actionPath = require.resolve('kinesalite/actions/getRecords')
  const getRecords = require(actionPath)
  const out = fs.openSync(file, 'a')

  function shardOf (iterator) {
    try {
      const sealed = Buffer.from(String(iterator), 'base64').subarray(8)
      const decipher = crypto.createDecipheriv('aes-256-cbc', db.ITERATOR_PWD_KEY, db.ITERATOR_PWD_IV)
      const pieces = Buffer.concat([decipher.update(sealed), decipher.final()]).toString('utf8').split('/')
      if (pieces.length === 5) return { stream: pieces[1], shardId: pieces[2] }
    } catch {
      // not an iterator kinesalite issued: logged without stream and shard
    }
    return { stream: null, shardId: null }
  }

  require.cache[actionPath].exports = function loggedGetRecords (store, data, cb) {
    const time = (performance.timeOrigin + performance.now()) / 1000
    fs.writeSync(out, JSON.stringify({ time, ...shardOf(data.ShardIterator) }) + '\n')
    return getRecords(store, data, cb)
  }
}

const kinesalite = require('kinesalite')

const port = options.port === undefined ? 4567 : options.port
const server = kinesalite(options).listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`)
})
server.on('error', (err) => {
  process.stderr.write(`kinesalite: ${err.message}\n`)
  process.exit(1)
})
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)))
