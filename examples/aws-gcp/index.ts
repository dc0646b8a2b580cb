// The seed scenario across two clouds: GCP VPC-A (10.0.0.0/16, us-central1) and AWS VPC-B
// (10.1.0.0/16, us-west-2), each with a subnet for its link hosts and one for workloads, joined by a
// sitelink Link whose state service runs in VPC-A. `pulumi up` in this directory runs it.
import * as aws from "@pulumi/aws";
import * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import * as sitelink from "../../lib";

const config = new pulumi.Config();
/** Networks allowed to SSH to the hosts and reach the state service port (e.g. your office /32). */
const adminCidrs = config.getObject<string[]>("adminCidrs") ?? [];
const keyName = config.get("keyName");

/** Two link hosts per location: "a" is active while healthy, "b" takes over within a couple of seconds. */
const hosts = [{ name: "a", priority: 2 }, { name: "b" }];

/** VPC-A on GCP: a custom-mode network (GCP networks have no CIDR of their own) and two subnetworks. */
function gcpVpcA() {
  const region = "us-central1";
  const provider = new gcp.Provider("gcp", { project: config.require("gcpProject"), region });
  const opts = { provider };
  const network = new gcp.compute.Network("vpc-a-network", { autoCreateSubnetworks: false, routingMode: "REGIONAL" }, opts);
  const hostsSubnet = new gcp.compute.Subnetwork("vpc-a-hosts", { network: network.id, region, ipCidrRange: "10.0.0.0/24" }, opts);
  new gcp.compute.Subnetwork("vpc-a-workloads", { network: network.id, region, ipCidrRange: "10.0.1.0/24", privateIpGoogleAccess: true }, opts);
  return new sitelink.GcpLocation(
    "vpc-a",
    // Routes into the link are the agent's: nothing to list here (see docs/components.md, "Routes on GCP").
    { network: network.selfLink, subnetwork: hostsSubnet.selfLink, zone: `${region}-a`, routes: ["10.0.0.0/16"], hosts },
    { provider },
  );
}

/** VPC-B on AWS: a public subnet for the link hosts and a private one for workloads, one route table each. */
function awsVpcB() {
  const region = "us-west-2";
  const provider = new aws.Provider(region, { region });
  const opts = { provider };
  const vpc = new aws.ec2.Vpc("vpc-b-vpc", { cidrBlock: "10.1.0.0/16", enableDnsHostnames: true, tags: { Name: "vpc-b" } }, opts);
  const igw = new aws.ec2.InternetGateway("vpc-b-igw", { vpcId: vpc.id, tags: { Name: "vpc-b" } }, opts);
  const subnet = (role: string, cidrBlock: string) =>
    new aws.ec2.Subnet(`vpc-b-${role}`, { vpcId: vpc.id, cidrBlock, availabilityZone: `${region}a`, tags: { Name: `vpc-b-${role}` } }, opts);
  const publicSubnet = subnet("public", "10.1.0.0/24");
  const privateSubnet = subnet("private", "10.1.1.0/24");
  // No inline `routes` on these tables: inline routes would delete the entries the Link adds.
  const publicTable = new aws.ec2.RouteTable("vpc-b-public", { vpcId: vpc.id, tags: { Name: "vpc-b-public" } }, opts);
  const privateTable = new aws.ec2.RouteTable("vpc-b-private", { vpcId: vpc.id, tags: { Name: "vpc-b-private" } }, opts);
  new aws.ec2.Route("vpc-b-internet", { routeTableId: publicTable.id, destinationCidrBlock: "0.0.0.0/0", gatewayId: igw.id }, opts);
  new aws.ec2.RouteTableAssociation("vpc-b-public", { subnetId: publicSubnet.id, routeTableId: publicTable.id }, opts);
  new aws.ec2.RouteTableAssociation("vpc-b-private", { subnetId: privateSubnet.id, routeTableId: privateTable.id }, opts);
  return new sitelink.AwsLocation(
    "vpc-b",
    // Keys, not positions, name the routes in each table: adding or removing a table renames nothing.
    { vpcId: vpc.id, subnetId: publicSubnet.id, routeTableIds: { public: publicTable.id, private: privateTable.id }, routes: ["10.1.0.0/16"], hosts, keyName },
    { provider },
  );
}

const link = new sitelink.Link("seed", {
  locations: [gcpVpcA(), awsVpcB()],
  stateService: { location: "vpc-a" },
  adminCidrs,
});

export const linkHosts = link.hosts;
export const stateUrl = link.stateUrl;
export const fingerprint = link.fingerprint;
