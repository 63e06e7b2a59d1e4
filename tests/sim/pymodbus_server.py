"""A third-party Modbus TCP server (pymodbus) for the write tests.

Usage: pymodbus_server.py PORT

Serves unit id 1 on 127.0.0.1:PORT with 400 coils and 400 holding
registers, all zero at start, writable with FC5, FC6, FC15, FC16 and FC22
(pymodbus's own implementation), until killed.
"""

import asyncio
import logging
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer


async def main():
    logging.disable(logging.WARNING)
    port = int(sys.argv[1])
    device = ModbusDeviceContext(co=ModbusSequentialDataBlock(1, [False] * 400), hr=ModbusSequentialDataBlock(1, [0] * 400))
    context = ModbusServerContext(devices={1: device}, single=False)
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", port))


asyncio.run(main())
