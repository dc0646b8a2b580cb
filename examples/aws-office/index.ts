// An AWS VPC (10.0.0.0/16, us-east-1) and an office LAN (10.20.0.0/16) whose existing Linux host is
// reached over SSH, joined by a sitelink Link whose state service runs in the VPC. Run it from this
// directory (its Pulumi.yaml); see README.md.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as sitelink from "../../lib";

const config = new pulumi.Config();
/** Networks allowed to SSH to the AWS hosts and reach the state service port (e.g. your office /32). */
const adminCidrs = config.getObject<string[]>("adminCidrs") ?? [];
/** The office's address on the internet (its router forwards UDP 500/4500 and TCP 9790 to the host). */
const officePublicAddress = config.require("officePublicAddress");
/** The office host's address on the office LAN. */
const officePrivateAddress = config.require("officePrivateAddress");
const officeRoutes = config.getObject<string[]>("officeRoutes") ?? ["10.20.0.0/16"];
/** `kernel` when the host is the office's router; `file` when the office router keeps static routes to it. Anything else is an error. */
const officeRouteMode = config.get<sitelink.SshRouteMode>("officeRouteMode", { allowedValues: ["kernel", "file"] }) ?? "kernel";
/**
 * kernel mode (required there): the office host's internet-facing interface, where the routes of
 * the VPC point. No default: names differ from host to host (eth0, ens18, enp1s0, …).
 */
const officeUplink = officeRouteMode === "kernel" ? config.require("officeUplink") : undefined;

const provider = new aws.Provider("us-east-1", { region: "us-east-1" });
const opts = { provider };
const vpc = new aws.ec2.Vpc("vpc-vpc", { cidrBlock: "10.0.0.0/16", enableDnsHostnames: true, tags: { Name: "vpc" } }, opts);
const igw = new aws.ec2.InternetGateway("vpc-igw", { vpcId: vpc.id, tags: { Name: "vpc" } }, opts);
const publicSubnet = new aws.ec2.Subnet("vpc-public", { vpcId: vpc.id, cidrBlock: "10.0.0.0/24", availabilityZone: "us-east-1a", tags: { Name: "vpc-public" } }, opts);
const privateSubnet = new aws.ec2.Subnet("vpc-private", { vpcId: vpc.id, cidrBlock: "10.0.1.0/24", availabilityZone: "us-east-1a", tags: { Name: "vpc-private" } }, opts);
// No inline `routes` on these tables: inline routes would delete the entries the Link adds.
const publicTable = new aws.ec2.RouteTable("vpc-public", { vpcId: vpc.id, tags: { Name: "vpc-public" } }, opts);
const privateTable = new aws.ec2.RouteTable("vpc-private", { vpcId: vpc.id, tags: { Name: "vpc-private" } }, opts);
new aws.ec2.Route("vpc-internet", { routeTableId: publicTable.id, destinationCidrBlock: "0.0.0.0/0", gatewayId: igw.id }, opts);
new aws.ec2.RouteTableAssociation("vpc-public", { subnetId: publicSubnet.id, routeTableId: publicTable.id }, opts);
new aws.ec2.RouteTableAssociation("vpc-private", { subnetId: privateSubnet.id, routeTableId: privateTable.id }, opts);

const cloud = new sitelink.AwsLocation(
  "vpc",
  { vpcId: vpc.id, subnetId: publicSubnet.id, routeTableIds: { public: publicTable.id, private: privateTable.id }, routes: ["10.0.0.0/16"], hosts: [{ name: "a", priority: 2 }, { name: "b" }] },
  { provider },
);

const office = new sitelink.SshLocation("office", {
  routes: officeRoutes,
  routeMode: officeRouteMode,
  ...(officeUplink !== undefined ? { kernel: { device: officeUplink } } : {}),
  hosts: [
    {
      name: "gw",
      publicAddress: officePublicAddress,
      privateAddress: officePrivateAddress,
      connection: {
        host: config.get("officeSshHost") ?? officePublicAddress,
        port: config.getNumber("officeSshPort") ?? 22,
        user: config.get("officeSshUser") ?? "root",
        privateKey: config.requireSecret("officeSshKey"),
        // The office host's own key (its /etc/ssh/ssh_host_ed25519_key.pub): SSH refuses any other.
        hostKey: config.require("officeSshHostKey"),
      },
    },
  ],
});

const link = new sitelink.Link("corp", { locations: [cloud, office], stateService: { location: "vpc" }, adminCidrs });

export const hosts = link.hosts;
export const stateUrl = link.stateUrl;
export const fingerprint = link.fingerprint;
