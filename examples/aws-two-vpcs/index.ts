// The seed scenario: VPC-A (10.0.0.0/16, us-east-1) and VPC-B (10.1.0.0/16, us-west-2), each with a
// public subnet for its link hosts and a private subnet for workloads, joined by a sitelink Link
// whose state service runs in VPC-A. `pulumi up` from the repository root runs this program.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as sitelink from "../../lib";

const config = new pulumi.Config();
/** Networks allowed to SSH to the hosts and reach the state service port (e.g. your office /32). */
const adminCidrs = config.getObject<string[]>("adminCidrs") ?? [];
const keyName = config.get("keyName");

interface Site {
  name: string;
  region: aws.Region;
  cidr: string;
}

/** A VPC with a public subnet (link hosts) and a private subnet (workloads), one route table each. */
function network(site: Site, provider: aws.Provider) {
  const opts = { provider };
  const [publicCidr, privateCidr] = [site.cidr.replace(/\.0\.0\/16$/, ".0.0/24"), site.cidr.replace(/\.0\.0\/16$/, ".1.0/24")];
  const vpc = new aws.ec2.Vpc(`${site.name}-vpc`, { cidrBlock: site.cidr, enableDnsHostnames: true, tags: { Name: site.name } }, opts);
  const igw = new aws.ec2.InternetGateway(`${site.name}-igw`, { vpcId: vpc.id, tags: { Name: site.name } }, opts);
  const subnet = (role: string, cidrBlock: string) =>
    new aws.ec2.Subnet(`${site.name}-${role}`, { vpcId: vpc.id, cidrBlock, availabilityZone: `${site.region}a`, tags: { Name: `${site.name}-${role}` } }, opts);
  const publicSubnet = subnet("public", publicCidr);
  const privateSubnet = subnet("private", privateCidr);
  // No inline `routes` on these tables: inline routes would delete the entries the Link adds.
  const publicTable = new aws.ec2.RouteTable(`${site.name}-public`, { vpcId: vpc.id, tags: { Name: `${site.name}-public` } }, opts);
  const privateTable = new aws.ec2.RouteTable(`${site.name}-private`, { vpcId: vpc.id, tags: { Name: `${site.name}-private` } }, opts);
  new aws.ec2.Route(`${site.name}-internet`, { routeTableId: publicTable.id, destinationCidrBlock: "0.0.0.0/0", gatewayId: igw.id }, opts);
  new aws.ec2.RouteTableAssociation(`${site.name}-public`, { subnetId: publicSubnet.id, routeTableId: publicTable.id }, opts);
  new aws.ec2.RouteTableAssociation(`${site.name}-private`, { subnetId: privateSubnet.id, routeTableId: privateTable.id }, opts);
  return { vpc, publicSubnet, publicTable, privateTable };
}

function location(site: Site) {
  const provider = new aws.Provider(site.region, { region: site.region });
  const net = network(site, provider);
  return new sitelink.AwsLocation(
    site.name,
    {
      vpcId: net.vpc.id,
      subnetId: net.publicSubnet.id,
      // Keys, not positions, name the routes in each table: adding or removing a table renames nothing.
      routeTableIds: { public: net.publicTable.id, private: net.privateTable.id },
      routes: [site.cidr],
      // Two hosts: "a" is active while it is healthy, "b" takes over within a couple of seconds.
      hosts: [{ name: "a", priority: 2 }, { name: "b" }],
      keyName,
    },
    { provider },
  );
}

const vpcA = location({ name: "vpc-a", region: "us-east-1", cidr: "10.0.0.0/16" });
const vpcB = location({ name: "vpc-b", region: "us-west-2", cidr: "10.1.0.0/16" });

const link = new sitelink.Link("seed", {
  locations: [vpcA, vpcB],
  stateService: { location: "vpc-a" },
  adminCidrs,
});

export const hosts = link.hosts;
export const stateUrl = link.stateUrl;
export const fingerprint = link.fingerprint;
