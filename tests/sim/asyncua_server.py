"""A third-party OPC UA server (asyncua) for the write tests.

Usage: asyncua_server.py PORT

Serves, without security, in namespace "urn:relais:test:asyncua", object
Plant with: sp (Double, writable), count (Int16, writable), ro (Int32 42,
read-only). Prints "ready opc.tcp://127.0.0.1:PORT/" once it listens.
"""

import asyncio
import sys

from asyncua import Server, ua


async def main():
    port = int(sys.argv[1])
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:relais:test:asyncua")
    plant = await server.nodes.objects.add_object(ua.NodeId("Plant", idx), "Plant")
    sp = await plant.add_variable(ua.NodeId("sp", idx), "sp", ua.Variant(0.0, ua.VariantType.Double))
    await sp.set_writable()
    count = await plant.add_variable(ua.NodeId("count", idx), "count", ua.Variant(0, ua.VariantType.Int16))
    await count.set_writable()
    await plant.add_variable(ua.NodeId("ro", idx), "ro", ua.Variant(42, ua.VariantType.Int32))
    async with server:
        print(f"ready opc.tcp://127.0.0.1:{port}/", flush=True)
        while True:
            await asyncio.sleep(1)


if __name__ == "__main__":
    asyncio.run(main())
