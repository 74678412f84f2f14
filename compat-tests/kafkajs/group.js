// kafkajs consumer-group check for Ottla, driven by compat-tests/test_groups_kafkajs.py.
//
// Usage: node group.js '<json config>'
//   config: { bootstrap, topic, group, members, ends: {partition: endOffset}, timeoutMs }
//
// Starts `members` kafkajs consumers in one group (consumer.run with eachMessage and kafkajs'
// default auto-commit after every batch), reads until every offset below `ends` was delivered
// and the COMMIT_OFFSETS events show commits up to `ends`, asks kafkajs' admin client to
// describe the group while the members are in it, disconnects the members (LeaveGroup), then
// fetches the group's committed offsets and lists groups with the admin client. Prints one JSON
// document on stdout (deliveries per member, joins, commits, crashes, the admin answers); the
// Python test checks it. Exit status 0 unless something threw or the timeout was reached
// (then the JSON still describes what happened, with "error" set).

'use strict'

const { Kafka, logLevel } = require('kafkajs')

const cfg = JSON.parse(process.argv[2])
const started = Date.now()
const out = { members: [], error: null }

const kafka = new Kafka({
  clientId: 'ottla-kafkajs',
  brokers: [cfg.bootstrap],
  logLevel: logLevel.WARN,
  connectionTimeout: 10000,
  requestTimeout: 30000,
  retry: { retries: 8, initialRetryTime: 200 },
})

const want = new Set()
for (const [p, end] of Object.entries(cfg.ends)) {
  for (let o = 0; o < end; o++) want.add(`${p}:${o}`)
}
const seen = new Set()

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

async function until(cond, what) {
  while (!cond()) {
    if (Date.now() - started > cfg.timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

function committedUpTo(members) {
  const best = {}
  for (const m of members) {
    for (const c of m.commits) {
      for (const t of c.topics) {
        if (t.topic !== cfg.topic) continue
        for (const p of t.partitions) {
          best[p.partition] = Math.max(best[p.partition] ?? -1, Number(p.offset))
        }
      }
    }
  }
  return best
}

async function startMember(i) {
  const consumer = kafka.consumer({
    groupId: cfg.group,
    sessionTimeout: 10000,
    rebalanceTimeout: 30000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 200,
    allowAutoTopicCreation: false,
  })
  const m = { name: `kafkajs-${i}`, consumer, deliveries: [], joins: [], commits: [], crashes: [] }
  const ev = consumer.events
  consumer.on(ev.GROUP_JOIN, e => m.joins.push({ t: Date.now(), ...e.payload }))
  consumer.on(ev.COMMIT_OFFSETS, e => m.commits.push({ t: Date.now(), ...e.payload }))
  consumer.on(ev.CRASH, e => m.crashes.push(String(e.payload.error && e.payload.error.stack || e.payload.error)))
  await consumer.connect()
  await consumer.subscribe({ topics: [cfg.topic], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const key = `${partition}:${message.offset}`
      m.deliveries.push([partition, Number(message.offset)])
      seen.add(key)
    },
  })
  return m
}

function summary(m) {
  return { name: m.name, deliveries: m.deliveries, joins: m.joins, commits: m.commits, crashes: m.crashes }
}

async function main() {
  const members = await Promise.all(Array.from({ length: cfg.members }, (_, i) => startMember(i)))
  out.members = members
  await until(() => [...want].every(k => seen.has(k)), 'every record to be delivered')
  await until(() => {
    const best = committedUpTo(members)
    return Object.entries(cfg.ends).every(([p, end]) => (best[p] ?? -1) >= end)
  }, 'commits up to the end of every partition')

  const admin = kafka.admin()
  await admin.connect()
  try {
    const before = await admin.describeGroups([cfg.group])
    out.describe_active = before.groups[0]
    // Member metadata/assignment buffers are not JSON: keep the ids and client ids.
    out.describe_active.members = out.describe_active.members.map(x => ({
      memberId: x.memberId,
      clientId: x.clientId,
      clientHost: x.clientHost,
      assignmentBytes: x.memberAssignment ? x.memberAssignment.length : 0,
    }))
    for (const m of members) await m.consumer.disconnect()
    const offsets = await admin.fetchOffsets({ groupId: cfg.group, topics: [cfg.topic] })
    out.fetch_offsets = offsets
    const listed = await admin.listGroups()
    out.list_groups = listed.groups.filter(g => g.groupId === cfg.group)
    const after = await admin.describeGroups([cfg.group])
    out.describe_after = { groupId: after.groups[0].groupId, state: after.groups[0].state,
      members: after.groups[0].members.length }
  } finally {
    await admin.disconnect()
  }
}

main()
  .catch(e => {
    out.error = String(e && e.stack || e)
  })
  .finally(async () => {
    for (const m of out.members) {
      try { await m.consumer.disconnect() } catch (e) { /* already gone */ }
    }
    out.members = out.members.map(summary)
    out.elapsed_ms = Date.now() - started
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(out.error ? 1 : 0))
  })
