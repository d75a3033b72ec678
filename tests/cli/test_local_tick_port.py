"""``visiontune local tick`` finds the port ``visiontune local up`` used (issue 13, item 5): local up writes
Core Tools' ``Host.LocalHttpPort`` into local.settings.json, and tick reads it when no --host-url is given."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cli.main import main
from local.stack import write_local_settings


def test_write_local_settings_records_the_host_port_and_keeps_values(tmp_path):
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"MINE": "1"}, "Host": {"CORS": "*"}}))
    write_local_settings(path, {"AzureWebJobsStorage": "x"}, host_port=51234)
    document = json.loads(path.read_text())
    assert document["Host"] == {"CORS": "*", "LocalHttpPort": 51234}
    assert document["Values"] == {"MINE": "1", "AzureWebJobsStorage": "x"}


def test_tick_posts_to_the_port_local_up_wrote(tmp_path, capsys):
    seen: list[str] = []

    class Host(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"function": "advance_runs", "outcome": "succeeded"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Host)  # not 7071: any free port, as `local up --host-port 0`
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = tmp_path / "local.settings.json"
        write_local_settings(settings, {"AzureWebJobsStorage": "x"}, host_port=server.server_address[1])
        assert main(["local", "tick", "advance_runs", "--settings", str(settings)]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["/admin/functions/advance_runs"]
    assert '"outcome": "succeeded"' in capsys.readouterr().out
