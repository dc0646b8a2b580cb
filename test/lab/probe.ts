// A steady UDP prober, run as its own process inside a client namespace:
//   probe echo <port>                    answer every datagram with itself
//   probe send <address> <port> <ms>     send a numbered datagram every <ms>, log sends and replies
// The sender writes `s <seq> <sentAtMs>` and `r <seq> <recvAtMs>` lines (wall clock, fractional ms)
// so the harness can tell, packet by packet, what was lost and when traffic flowed again.
import { createSocket } from "node:dgram";
import { performance } from "node:perf_hooks";

const now = () => performance.timeOrigin + performance.now();

function echo(port: number) {
  const socket = createSocket("udp4");
  socket.on("message", (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
  socket.bind(port);
}

function send(address: string, port: number, intervalMs: number) {
  const socket = createSocket("udp4");
  let seq = 0;
  socket.on("message", (msg) => {
    if (msg.length !== 12) return;
    process.stdout.write(`r ${msg.readUInt32BE(0)} ${now().toFixed(3)}\n`);
  });
  // Sends to an unreachable network fail with an error event; keep probing.
  socket.on("error", () => undefined);
  setInterval(() => {
    const packet = Buffer.alloc(12);
    packet.writeUInt32BE(seq, 0);
    const at = now();
    packet.writeDoubleBE(at, 4);
    process.stdout.write(`s ${seq} ${at.toFixed(3)}\n`);
    seq++;
    socket.send(packet, port, address, () => undefined);
  }, intervalMs);
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "echo" && args.length === 1) echo(Number(args[0]));
else if (mode === "send" && args.length === 3) send(args[0]!, Number(args[1]), Number(args[2]));
else {
  process.stderr.write("usage: probe echo <port> | probe send <address> <port> <intervalMs>\n");
  process.exit(2);
}
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
