// A third-party OPC UA server for relais's tests: node-opcua (npm), the most
// common OPC UA stack, with security on.
//
// Usage: node node_opcua_server.js PORT PKI_DIR
//   NODE_PATH must reach node-opcua (.ci/run installs it under target/).
// Offers only Basic256Sha256 / SignAndEncrypt, with node-opcua's own
// self-signed application certificate (made in PKI_DIR on first start; its
// subjectAltName lists DNS:<hostname>, the IP addresses (127.0.0.1 added
// here), then URI:urn:<hostname>:NodeOPCUA-Server: the URI comes last).
// Client certificates are accepted automatically (the test trusts the
// server's certificate on relais's side, which is what is tested).
// Serves, in namespace urn:relais:test:node-opcua, an object `line` with
//   s=line.counter      Int32, +1 every 200 ms
//   s=line.temperature  Double, 21.5
//   s=line.running      Boolean, true
// Prints one line `ready <endpoint> <certificate file>` once listening.
const path = require("path");
const { OPCUAServer, OPCUACertificateManager, MessageSecurityMode, SecurityPolicy, Variant, DataType } = require("node-opcua");

async function main(port, pki) {
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pki, "server"),
    automaticallyAcceptUnknownCertificate: true,
  });
  const server = new OPCUAServer({
    port,
    resourcePath: "/UA/relais",
    serverCertificateManager,
    securityModes: [MessageSecurityMode.SignAndEncrypt],
    securityPolicies: [SecurityPolicy.Basic256Sha256],
    allowAnonymous: true,
    alternateHostname: ["127.0.0.1"],
    buildInfo: { productName: "relais-test-node-opcua" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:relais:test:node-opcua");
  const line = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "line", nodeId: "s=line" });
  let n = 0;
  ns.addVariable({
    componentOf: line,
    browseName: "counter",
    nodeId: "s=line.counter",
    dataType: "Int32",
    minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Int32, value: n }) },
  });
  ns.addVariable({
    componentOf: line,
    browseName: "temperature",
    nodeId: "s=line.temperature",
    dataType: "Double",
    minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Double, value: 21.5 }) },
  });
  ns.addVariable({
    componentOf: line,
    browseName: "running",
    nodeId: "s=line.running",
    dataType: "Boolean",
    minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Boolean, value: true }) },
  });
  setInterval(() => {
    n += 1;
  }, 200);
  await server.start();
  console.log(`ready ${server.getEndpointUrl()} ${server.certificateFile}`);
}

main(parseInt(process.argv[2], 10), process.argv[3]).catch((e) => {
  console.error(e);
  process.exit(1);
});
