// The real EC2 client (no mock) against local endpoints that never answer: a call must fail within
// the client's timeouts instead of holding the apply, and so every later one, forever.
import { createServer, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { ReplaceRouteCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEc2Client, EC2_TIMEOUTS_MS } from "./aws";

let silent: Server;
const sockets = new Set<Socket>();
let port: number;

beforeAll(async () => {
  // Accepts the connection and never says a word: a hung endpoint (or a proxy that lost its upstream).
  silent = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  port = (silent.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => silent.close(resolve));
});

describe("the EC2 client", () => {
  it("has connection and request timeouts by default", () => {
    expect(EC2_TIMEOUTS_MS).toEqual({ connection: 3_000, request: 10_000 });
  });

  it("gives up on an endpoint that never answers", async () => {
    const ec2 = createEc2Client(
      { region: "eu-central-1", endpoint: `http://127.0.0.1:${port}`, credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 2 },
      { connection: 200, request: 200 },
    );
    try {
      const started = Date.now();
      const error = (await ec2.send(new ReplaceRouteCommand({ RouteTableId: "rtb-0aaa", DestinationCidrBlock: "10.2.0.0/16", NetworkInterfaceId: "eni-0a1b" })).catch((e: Error) => e)) as Error;
      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe("TimeoutError");
      // Two attempts of 200 ms plus the SDK's retry delay: far from hanging.
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      ec2.destroy();
    }
  });
});
