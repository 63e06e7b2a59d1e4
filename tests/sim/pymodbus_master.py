"""A third-party Modbus master (pymodbus) for the simulator's tests.

Usage: pymodbus_master.py tcp HOST PORT UNIT | rtu PATH UNIT

Reads holding registers 0-1, then asks FC8 (diagnostics, return query
data), FC20 (read file record) and FC43 / MEI 0x0E (read device
identification, basic stream), and prints one JSON object with what came
back: register values, exception codes, device identification objects.
"""

import json
import sys

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.pdu.file_message import FileRecord


def outcome(rr):
    if rr.isError():
        return {"exception": getattr(rr, "exception_code", None)}
    return {"ok": True}


def main():
    kind = sys.argv[1]
    if kind == "tcp":
        client = ModbusTcpClient(sys.argv[2], port=int(sys.argv[3]), timeout=2, retries=0)
        unit = int(sys.argv[4])
    else:
        client = ModbusSerialClient(sys.argv[2], baudrate=19200, timeout=1, retries=0)
        unit = int(sys.argv[3])
    if not client.connect():
        print(json.dumps({"error": "cannot connect"}))
        return 1
    out = {}
    rr = client.read_holding_registers(0, count=2, device_id=unit)
    out["holding"] = None if rr.isError() else list(rr.registers)
    out["fc8"] = outcome(client.diag_query_data(b"\x12\x34", device_id=unit))
    rec = FileRecord(file_number=4, record_number=1, record_length=2)
    out["fc20"] = outcome(client.read_file_record([rec], device_id=unit))
    rr = client.read_device_information(read_code=1, object_id=0, device_id=unit)
    if rr.isError():
        out["fc43"] = outcome(rr)
    else:
        out["fc43"] = {
            "conformity": rr.conformity,
            "objects": {str(k): v.decode() for k, v in rr.information.items()},
        }
    client.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
