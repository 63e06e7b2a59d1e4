"""A third-party OPC UA server for relais's tests (Python asyncua).

Usage: python3 asyncua_server.py PORT
Serves, in namespace urn:relais:test:asyncua, an object `line` with
  s=line.counter      Int64, +1 every 200 ms
  s=line.temperature  Double, 21.5
  s=line.running      Boolean, true
"""
import asyncio
import sys

from asyncua import Server, ua


async def main(port: int) -> None:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:relais:test:asyncua")
    line = await server.nodes.objects.add_object(ua.NodeId("line", idx), ua.QualifiedName("line", idx))
    counter = await line.add_variable(ua.NodeId("line.counter", idx), ua.QualifiedName("counter", idx), ua.Variant(0, ua.VariantType.Int64))
    await line.add_variable(ua.NodeId("line.temperature", idx), ua.QualifiedName("temperature", idx), ua.Variant(21.5, ua.VariantType.Double))
    await line.add_variable(ua.NodeId("line.running", idx), ua.QualifiedName("running", idx), ua.Variant(True, ua.VariantType.Boolean))
    async with server:
        n = 0
        while True:
            await asyncio.sleep(0.2)
            n += 1
            await counter.write_value(ua.Variant(n, ua.VariantType.Int64))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
