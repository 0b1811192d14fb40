// A Kumo function as a plain Node.js script that speaks the runner
// protocol itself (docs/runner-protocol.md), with no Kumo runner:
// deploy it with runtime "custom" and entrypoint "node bootstrap.mjs".
import net from 'node:net';

const channel = new net.Socket({ fd: 3, readable: true, writable: true });

function send(message) {
  const payload = Buffer.from(JSON.stringify(message));
  const head = Buffer.alloc(4);
  head.writeUInt32BE(payload.length);
  channel.write(Buffer.concat([head, payload]));
}

function handle(event) {
  const name = (event && event.query && event.query.name) || 'world';
  console.log(`greeting ${name}`);
  return { statusCode: 200, headers: { 'content-type': 'text/plain' }, body: `hello, ${name} from a script` };
}

let buffered = Buffer.alloc(0);
channel.on('data', (chunk) => {
  buffered = Buffer.concat([buffered, chunk]);
  while (buffered.length >= 4) {
    const size = buffered.readUInt32BE(0);
    if (buffered.length < 4 + size) break;
    const message = JSON.parse(buffered.subarray(4, 4 + size).toString('utf8'));
    buffered = buffered.subarray(4 + size);
    if (message.type === 'load') {
      send({ type: 'loaded' });
    } else if (message.type === 'invoke') {
      try {
        send({ type: 'result', id: message.id, ok: true, output: handle(message.event) });
      } catch (e) {
        send({ type: 'result', id: message.id, ok: false,
               error: { type: e.name || 'Error', message: String(e.message), traceback: e.stack || '' } });
      }
    } else {
      process.stderr.write(`kumo-runner: protocol error: unknown message type ${message.type}\n`);
      process.exit(2);
    }
  }
});
channel.on('end', () => process.exit(0));
send({ type: 'hello', protocol: 1, runtime: 'node-script', runtime_version: process.versions.node });
