// kafkajs transactional producer check for Ottla, driven by compat-tests/test_transactions.py.
//
// Usage: node txn.js '<json config>'
//   config: { bootstrap, topic, transactionalId, timeoutMs,
//             steps: [{ action: "commit" | "abort", messages: [{ partition, key, value }] }] }
//
// One kafkajs producer with { transactionalId, idempotent: true, maxInFlightRequests: 1 }
// (InitProducerId with the transactional id on the first transaction). For every step:
// producer.transaction(), one txn.send() per message (each awaits its Produce response, so an
// aborted transaction's records are in the log before the abort), then txn.commit() or
// txn.abort(). Prints one JSON document on stdout: per step the action, the RecordMetadata of
// every send ([partition, baseOffset]) and the error, if any; the Python test then reads the
// topic with read_committed and read_uncommitted consumers. Exit status 0 unless something
// threw or the timeout was reached (then the JSON still describes what happened, with "error"
// set).

'use strict'

const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const started = Date.now()
const out = { steps: [], error: null }

const kafka = new Kafka({
  clientId: 'ottla-kafkajs-txn',
  brokers: [cfg.bootstrap],
  logLevel: logLevel.WARN,
  connectionTimeout: 10000,
  requestTimeout: 30000,
  retry: { retries: 8, initialRetryTime: 200 },
})

function withTimeout(promise, what) {
  const left = cfg.timeoutMs - (Date.now() - started)
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), Math.max(left, 1))
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function main() {
  const producer = kafka.producer({
    transactionalId: cfg.transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 60000,
    allowAutoTopicCreation: false,
  })
  out.producer = producer
  await withTimeout(producer.connect(), 'producer.connect()')
  for (const [i, step] of cfg.steps.entries()) {
    const res = { step: i, action: step.action, sent: [], error: null }
    out.steps.push(res)
    const txn = await withTimeout(producer.transaction(), `producer.transaction() of step ${i}`)
    for (const m of step.messages) {
      const md = await withTimeout(txn.send({
        topic: cfg.topic,
        acks: -1,
        messages: [{ key: m.key, value: m.value, partition: m.partition }],
      }), `txn.send() in step ${i}`)
      for (const r of md) res.sent.push([r.partition, Number(r.baseOffset), r.errorCode])
    }
    if (step.action === 'commit') {
      await withTimeout(txn.commit(), `txn.commit() of step ${i}`)
    } else {
      await withTimeout(txn.abort(), `txn.abort() of step ${i}`)
    }
    res.done = true
  }
}

main()
  .catch(e => {
    out.error = String(e && e.stack || e)
  })
  .finally(async () => {
    if (out.producer) {
      try { await out.producer.disconnect() } catch (e) { /* already gone */ }
      delete out.producer
    }
    out.elapsed_ms = Date.now() - started
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(out.error ? 1 : 0))
  })
