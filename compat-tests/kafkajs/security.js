// kafkajs over a secured listener (TLS and/or SASL PLAIN), driven by compat-tests/test_security.py.
//
// Usage: node security.js '<json config>'
//   config: { bootstrap, topic, count, mode: "data" | "bad-login", caFile (TLS when set),
//             sasl: { mechanism, username, password } | null, timeoutMs }
//
// "data": the admin client describes the cluster and creates the topic (2 partitions), a producer
// sends `count` records (key k<i>, value v<i>..., header h=h<i>, acks -1) and prints what each send
// was acknowledged with, a consumer group reads the topic from the beginning until `count` records
// arrived. "bad-login": the admin client's connect() is expected to fail; the error is reported.
// Prints one JSON document on stdout (the Python test checks it); exit status 0 unless something
// threw (then "error" is set in the JSON).

'use strict'

const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const started = Date.now()
const out = { error: null, cluster: null, produced: [], consumed: [], loginError: null }

const kafka = new Kafka({
  clientId: 'ottla-kafkajs-security',
  brokers: [cfg.bootstrap],
  logLevel: logLevel.NOTHING,
  connectionTimeout: 10000,
  authenticationTimeout: 10000,
  requestTimeout: 30000,
  retry: { retries: cfg.mode === 'bad-login' ? 0 : 8, initialRetryTime: 200 },
  ssl: cfg.caFile ? { ca: [fs.readFileSync(cfg.caFile, 'utf8')] } : false,
  sasl: cfg.sasl || undefined,
})

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

function value(i) {
  return `kafkajs-security-v${i}:` + 'x'.repeat(i % 37)
}

async function data() {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const c = await admin.describeCluster()
    out.cluster = { brokers: c.brokers.map(b => ({ nodeId: b.nodeId, host: b.host, port: b.port })) }
    await admin.createTopics({ topics: [{ topic: cfg.topic, numPartitions: 2, replicationFactor: 1 }], waitForLeaders: true })
  } finally {
    await admin.disconnect()
  }

  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  try {
    for (let start = 0; start < cfg.count; start += 50) {
      const messages = []
      for (let i = start; i < Math.min(cfg.count, start + 50); i++) {
        messages.push({ key: `k${i}`, value: value(i), partition: i % 2, headers: { h: `h${i}` } })
      }
      const res = await producer.send({ topic: cfg.topic, acks: -1, messages })
      out.produced.push(...res.map(r => ({ partition: r.partition, baseOffset: String(r.baseOffset), errorCode: r.errorCode })))
    }
  } finally {
    await producer.disconnect()
  }

  const consumer = kafka.consumer({ groupId: `kafkajs-security-${cfg.topic}`, maxWaitTimeInMs: 200, allowAutoTopicCreation: false })
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [cfg.topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const headers = {}
        for (const [k, v] of Object.entries(message.headers || {})) headers[k] = v === null ? null : v.toString()
        out.consumed.push({
          partition,
          offset: String(message.offset),
          key: message.key === null ? null : message.key.toString(),
          value: message.value === null ? null : message.value.toString(),
          headers,
        })
      },
    })
    while (out.consumed.length < cfg.count) {
      if (Date.now() - started > cfg.timeoutMs) throw new Error(`timed out: consumed ${out.consumed.length} of ${cfg.count}`)
      await sleep(100)
    }
  } finally {
    await consumer.disconnect()
  }
}

async function badLogin() {
  const admin = kafka.admin()
  try {
    await admin.connect()
    out.loginError = null
    await admin.disconnect()
  } catch (e) {
    out.loginError = { name: e.name, message: String(e.message) }
  }
}

async function main() {
  const timer = setTimeout(() => {
    out.error = `timed out after ${cfg.timeoutMs} ms`
    console.log(JSON.stringify(out))
    process.exit(1)
  }, cfg.timeoutMs + 10000)
  try {
    if (cfg.mode === 'bad-login') await badLogin()
    else await data()
  } catch (e) {
    out.error = String(e && e.stack || e)
  }
  clearTimeout(timer)
  console.log(JSON.stringify(out))
  process.exit(out.error ? 1 : 0)
}

main()
