"""Reads nodes of the simulator with a third-party OPC UA client (asyncua).

Usage: asyncua_types.py ENDPOINT NODEID...

Prints one JSON object: for each node id, its DataType attribute (the
standard type's name, e.g. "Int16") and the VariantType of its value.
"""

import asyncio
import json
import sys

from asyncua import Client, ua


async def main():
    out = {}
    async with Client(url=sys.argv[1], timeout=10) as client:
        for nid in sys.argv[2:]:
            node = client.get_node(nid)
            dt = await node.read_data_type()
            dv = await node.read_data_value()
            name = ua.ObjectIdNames.get(dt.Identifier, str(dt))
            out[nid] = {"data_type": name, "variant": dv.Value.VariantType.name, "value": dv.Value.Value}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
