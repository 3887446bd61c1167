// Reads one JSON string per line on stdin, writes the redact-pii output (JSON string) per line,
// then a last line {"us_per_message": N} timed around the redaction calls only.
const { SyncRedactor } = require('redact-pii');
const readline = require('readline');
const redactor = new SyncRedactor();
const texts = [];
readline.createInterface({ input: process.stdin }).on('line', (line) => texts.push(JSON.parse(line))).on('close', () => {
  const out = [];
  const start = process.hrtime.bigint();
  for (const text of texts) out.push(redactor.redact(text));
  const elapsed = Number(process.hrtime.bigint() - start) / 1000;
  for (const text of out) process.stdout.write(JSON.stringify(text) + '\n');
  process.stdout.write(JSON.stringify({ us_per_message: elapsed / Math.max(1, texts.length) }) + '\n');
});
