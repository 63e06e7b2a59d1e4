// Decodes Sparkplug B payloads with Eclipse Tahu's npm package `sparkplug-payload`
// (the reference implementation), for tests/it/sparkplug.rs.
//
// Usage: node decode.js <node_modules folder holding sparkplug-payload>
// Input (stdin): one message per line, "<topic>\t<payload in hex>".
// Output (stdout): one JSON object per line, {"topic": ..., "payload": <decoded>},
// 64-bit integers (protobufjs Long values) written as decimal strings.
//
// Data messages carry metrics by alias without a datatype (Sparkplug 3.0 §6.4.6); like a
// host application, this script takes the datatype from the birth that declared the alias
// (per edge node, in arrival order) and lets the library decode the value with it.
'use strict';
const path = require('path');
const modules = process.argv[2];
const sparkplug = require(path.join(modules, 'sparkplug-payload')).get('spBv1.0');
const Proto = require(path.join(modules, 'sparkplug-payload/lib/sparkplugPayloadProto')).org.eclipse.tahu.protobuf.Payload;
const declared = new Map();

function withBirthTypes(topic, bytes) {
  const parts = topic.split('/');
  const node = parts[1] + '/' + parts[3];
  const raw = Proto.decode(bytes);
  const birth = parts[2] === 'NBIRTH' || parts[2] === 'DBIRTH';
  let filled = false;
  for (const m of raw.metrics) {
    if (m.alias === null || m.alias === undefined) continue;
    const key = node + '|' + m.alias.toString();
    if (birth && m.datatype) {
      declared.set(key, m.datatype);
    } else if (!m.datatype && declared.has(key)) {
      m.datatype = declared.get(key);
      filled = true;
    }
  }
  return filled ? Proto.encode(raw).finish() : bytes;
}

function isLong(v) {
  return v !== null && typeof v === 'object' && 'low' in v && 'high' in v && 'unsigned' in v;
}

function plain(v) {
  if (isLong(v)) {
    return typeof v.toString === 'function' ? v.toString() : String(v.low);
  }
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
    return Buffer.from(v).toString('base64');
  }
  if (Array.isArray(v)) {
    return v.map(plain);
  }
  if (v !== null && typeof v === 'object') {
    const out = {};
    for (const k of Object.keys(v)) {
      out[k] = plain(v[k]);
    }
    return out;
  }
  return v;
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const out = [];
  for (const line of input.split('\n')) {
    if (!line) continue;
    const tab = line.indexOf('\t');
    const topic = line.slice(0, tab);
    const bytes = Buffer.from(line.slice(tab + 1), 'hex');
    out.push(JSON.stringify({ topic, payload: plain(sparkplug.decodePayload(withBirthTypes(topic, bytes))) }));
  }
  process.stdout.write(out.join('\n') + '\n');
});
