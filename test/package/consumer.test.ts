// The package as a user gets it: `npm pack` (prepack builds), the tarball's exact contents, and a
// fresh Pulumi project of its own that installs it (no install scripts) with other versions of the
// Pulumi SDKs and without the optional peers, compiles a strict TypeScript program against it and
// runs an AWS-only link under Pulumi mocks.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = join(__dirname, "..", "..");
const ours = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string; devDependencies: Record<string, string> };
// Other versions than our own where they are small to fetch; @pulumi/aws (large) and typescript are ours, already in npm's cache.
const CONSUMER_DEPENDENCIES = {
  "@pulumi/pulumi": "3.230.0",
  "@pulumi/random": "4.20.0",
  "@pulumi/tls": "5.5.0",
  "@pulumi/aws": ours.devDependencies["@pulumi/aws"]!,
  typescript: ours.devDependencies.typescript!,
};

let dir: string;
let tarball: string;
let files: string[];

const npm = (args: string[], cwd: string) => execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "sitelink-package-"));
  const packed = JSON.parse(npm(["pack", "--json", "--pack-destination", dir], root)) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, packed[0]!.filename);
  files = packed[0]!.files.map((f) => f.path).sort();
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Source files under `sub` of the repository, relative to it, without tests. */
function sources(sub: string): string[] {
  return (readdirSync(join(root, sub), { recursive: true }) as string[])
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".test.ts"))
    .map((f) => join(sub, f));
}
const compiled = (source: string) => [`dist/${source.replace(/\.ts$/, ".js")}`, `dist/${source.replace(/\.ts$/, ".d.ts")}`];

describe("the npm package", () => {
  it("holds the compiled library, the contract modules it imports, the bundle, the units, LICENSE and README, and nothing else", () => {
    const contract = files.filter((f) => f.startsWith("dist/agent/contract/"));
    expect(files.filter((f) => !contract.includes(f))).toEqual(
      [
        "LICENSE",
        "README.md",
        "package.json",
        "agent/host/sitelink-agent.service",
        "agent/state/sitelink-state.service",
        "dist/sitelink.js",
        ...sources("lib").flatMap(compiled),
      ].sort(),
    );
    // Only compiled contract modules (declarations beside them), among them the one the index re-exports.
    expect(contract.length).toBeGreaterThan(0);
    for (const file of contract) expect(sources("agent/contract").flatMap(compiled), file).toContain(file);
    expect(contract).toContain("dist/agent/contract/topology.d.ts");
    // No source maps (the sources are not shipped), no tests or test kits.
    expect(files.filter((f) => /\.map$|test|testkit/.test(f))).toEqual([]);
    expect(readFileSync(join(root, "LICENSE"), "utf8")).toContain("Apache License\n                           Version 2.0, January 2004");
  });

  it("runs no install script and depends on nothing native; the Pulumi SDKs are peers, GCP and command optional", () => {
    const pkg = JSON.parse(execFileSync("tar", ["-xzOf", tarball, "package/package.json"], { encoding: "utf8" })) as {
      scripts: Record<string, string>;
      dependencies: Record<string, string>;
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
      exports: Record<string, unknown>;
    };
    for (const hook of ["preinstall", "install", "postinstall", "prepare"]) expect(pkg.scripts[hook], hook).toBeUndefined();
    expect(Object.keys(pkg.dependencies).sort()).toEqual(["ipaddr.js", "zod"]);
    expect(Object.keys(pkg.peerDependencies).sort()).toEqual(["@pulumi/aws", "@pulumi/command", "@pulumi/gcp", "@pulumi/pulumi", "@pulumi/random", "@pulumi/tls"]);
    expect(pkg.peerDependenciesMeta).toEqual({ "@pulumi/command": { optional: true }, "@pulumi/gcp": { optional: true } });
    expect(pkg.exports["."]).toEqual({ types: "./dist/lib/index.d.ts", require: "./dist/lib/index.js", default: "./dist/lib/index.js" });
  });

  it("installs into a Pulumi project of its own, compiles a strict program against it and runs an AWS-only link under mocks", () => {
    const consumer = join(dir, "consumer");
    mkdirSync(join(consumer, "src"), { recursive: true });
    writeFileSync(
      join(consumer, "package.json"),
      JSON.stringify({ name: "consumer", private: true, dependencies: { sitelink: `file:${relative(consumer, tarball)}`, ...CONSUMER_DEPENDENCIES } }, null, 2),
    );
    writeFileSync(
      join(consumer, "tsconfig.json"),
      JSON.stringify({ compilerOptions: { target: "ES2022", module: "nodenext", moduleResolution: "nodenext", strict: true, skipLibCheck: true, types: [], outDir: "out", rootDir: "src" } }),
    );
    writeFileSync(join(consumer, "src", "program.ts"), PROGRAM);
    writeFileSync(join(consumer, "src", "main.ts"), MAIN);
    npm(["install", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], consumer);

    const installed = (name: string) => JSON.parse(readFileSync(join(consumer, "node_modules", name, "package.json"), "utf8")) as { version: string };
    expect(installed("@pulumi/pulumi").version).toBe(CONSUMER_DEPENDENCIES["@pulumi/pulumi"]);
    expect(installed("sitelink").version).toBe(ours.version);
    // Not installed, and not needed by an AWS-only program.
    expect(() => installed("@pulumi/gcp")).toThrow();
    expect(() => installed("@pulumi/command")).toThrow();

    execFileSync(process.execPath, [join(consumer, "node_modules", "typescript", "bin", "tsc"), "-p", consumer], { cwd: consumer, stdio: "pipe" });
    const result = JSON.parse(execFileSync(process.execPath, [join(consumer, "out", "main.js")], { cwd: consumer, encoding: "utf8" })) as {
      types: string[];
      hosts: number;
      stateUrl: string;
      fingerprint: string;
      loadedGcp: boolean;
      loadedCommand: boolean;
      gcpError: string;
      sshError: string;
    };
    expect(result.types).toEqual(
      expect.arrayContaining([
        "sitelink:index:Link",
        "sitelink:index:AwsLocation",
        "sitelink:index:StateService",
        "aws:ec2/instance:Instance",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ssm/parameter:Parameter",
        "random:index/randomBytes:RandomBytes",
        "tls:index/privateKey:PrivateKey",
        "tls:index/selfSignedCert:SelfSignedCert",
      ]),
    );
    expect(result.types.filter((t) => t.startsWith("gcp:") || t.startsWith("command:"))).toEqual([]);
    expect(result.hosts).toBe(2);
    expect(result.stateUrl).toMatch(/^https:\/\//);
    expect(result.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    expect({ loadedGcp: result.loadedGcp, loadedCommand: result.loadedCommand }).toEqual({ loadedGcp: false, loadedCommand: false });
    expect(result.gcpError).toBe("GcpLocation needs the package @pulumi/gcp: npm install @pulumi/gcp");
    expect(result.sshError).toBe("SshLocation needs the package @pulumi/command: npm install @pulumi/command");
  }, 300_000);
});

/** The user's program: what the README shows, AWS only. */
const PROGRAM = `import * as sitelink from "sitelink";

const location = (name: string, routes: string[]): sitelink.AwsLocation =>
  new sitelink.AwsLocation(name, { vpcId: "vpc-0123456789abcdef0", subnetId: "subnet-0123456789abcdef0", routeTableIds: ["rtb-00000000000000001"], routes });

export function corp(): sitelink.Link {
  // Under mocks there is no state service to wait for (and its mocked address must never be contacted).
  return new sitelink.Link("corp", {
    stateService: { location: "east" },
    locations: [location("east", ["10.0.0.0/16"]), location("west", ["10.1.0.0/16"])],
    readiness: { wait: false },
  });
}
`;

/** Runs the program under Pulumi mocks and prints what it registered, as JSON. */
const MAIN = `import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";

function selfSignedCert(): string {
  const dir = mkdtempSync(join(tmpdir(), "consumer-cert-"));
  try {
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=test", "-days", "1", "-keyout", join(dir, "k"), "-out", join(dir, "c")], { stdio: "ignore" });
    return readFileSync(join(dir, "c"), "utf8");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const certPem = selfSignedCert();
const types: string[] = [];
let n = 0;

async function main(): Promise<void> {
  await pulumi.runtime.setMocks(
    {
      newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
        types.push(args.type);
        n++;
        const state: Record<string, unknown> = { ...args.inputs };
        if (args.type === "random:index/randomBytes:RandomBytes") state.base64 = Buffer.alloc(32, 7).toString("base64");
        if (args.type === "tls:index/privateKey:PrivateKey") state.privateKeyPem = "key";
        if (args.type === "tls:index/selfSignedCert:SelfSignedCert") state.certPem = certPem;
        if (args.type === "aws:ec2/eip:Eip") state.publicIp = \`203.0.113.\${n % 250}\`;
        if (args.type === "aws:ec2/networkInterface:NetworkInterface") state.privateIp = \`10.250.0.\${n % 250}\`;
        if (args.type === "aws:ec2/instance:Instance") state.privateIp = \`10.251.0.\${n % 250}\`;
        if (args.type === "aws:iam/role:Role") Object.assign(state, { name: \`\${args.name}-role\`, arn: \`arn:aws:iam::123456789012:role/\${args.name}\` });
        if (args.type === "aws:iam/instanceProfile:InstanceProfile") state.name = \`\${args.name}-profile\`;
        if (args.type === "aws:ssm/parameter:Parameter") state.arn = \`arn:aws:ssm:us-east-1:123456789012:parameter\${String(args.inputs.name)}\`;
        if (args.type === "aws:ec2/managedPrefixList:ManagedPrefixList") state.arn = \`arn:aws:ec2:us-east-1:123456789012:prefix-list/\${args.name}\`;
        // Ids as AWS makes them where the agent's config checks their form.
        if (args.type === "aws:ec2/networkInterface:NetworkInterface") return { id: \`eni-\${n.toString(16).padStart(17, "0")}\`, state };
        return { id: \`\${args.name}-id\`, state };
      },
      call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
        switch (args.token) {
          case "aws:index/getCallerIdentity:getCallerIdentity":
            return { accountId: "123456789012", arn: "arn:aws:iam::123456789012:user/test", userId: "AIDTEST", id: "123456789012" };
          case "aws:index/getRegion:getRegion":
            return { region: "us-east-1", name: "us-east-1", id: "us-east-1" };
          case "aws:ec2/getAmi:getAmi":
            return { id: "ami-0123456789abcdef0", imageId: "ami-0123456789abcdef0" };
          case "aws:ec2/getSubnet:getSubnet":
            return { id: args.inputs.id, availabilityZone: "us-east-1a" };
          default:
            return args.inputs;
        }
      },
    },
    "consumer",
    "dev",
    false,
  );
  const sitelink = await import("sitelink");
  const { corp } = await import("./program.js");
  const link = corp();
  const value = <T>(output: pulumi.Output<T>) => new Promise<T>((resolve) => output.apply(resolve));
  const [hosts, stateUrl, fingerprint] = await Promise.all([value(link.hosts), value(link.stateUrl), value(link.fingerprint)]);
  const loaded = (name: string) => Object.keys(require.cache).some((file) => file.includes(\`/node_modules/\${name}/\`));
  const loadedGcp = loaded("@pulumi/gcp");
  const loadedCommand = loaded("@pulumi/command");
  const message = (build: () => unknown) => {
    try {
      build();
      return "constructed";
    } catch (error) {
      return (error as Error).message;
    }
  };
  const gcpError = message(() => new sitelink.GcpLocation("g", { network: "n", subnetwork: "s", zone: "us-central1-a", routes: ["10.2.0.0/16"] }));
  const sshError = message(
    () => new sitelink.SshLocation("s", { routes: ["10.3.0.0/16"], kernel: { via: "10.3.0.1" }, hosts: [{ name: "a", publicAddress: "198.51.100.7", privateAddress: "10.3.0.7", connection: { user: "root", privateKey: "k", hostKey: \`ssh-ed25519 \${Buffer.alloc(51, 1).toString("base64")}\` } }] }),
  );
  // Once nothing is left to run, every registration the program started has reached the mocks.
  process.once("beforeExit", () => {
    process.stdout.write(JSON.stringify({ types: [...new Set(types)].sort(), hosts: hosts.length, stateUrl, fingerprint, loadedGcp, loadedCommand, gcpError, sshError }));
  });
}

main().catch((error: unknown) => {
  process.stderr.write(\`\${(error as Error).stack ?? String(error)}\\n\`);
  process.exit(1);
});
`;
