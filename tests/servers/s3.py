"""A real S3-compatible server for tests: moto's server (PyPI ``moto[server]``)
on 127.0.0.1, spoken to over HTTP by pyarrow's S3 filesystem exactly as it
would speak to AWS. Everything it stores is in its memory and goes when it
stops."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.servers.process import free_port, stop, wait_until_listening

# moto accepts any credentials; pyarrow reads them from the environment as it would for AWS
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def moto_binary() -> str | None:
    here = Path(sys.executable).parent / "moto_server"
    return str(here) if here.is_file() else shutil.which("moto_server")


class S3Server:
    """``moto_server`` on 127.0.0.1 until closed; ``uri(bucket, path)`` names a
    place in it the way a user writes an S3 URI for a non-AWS endpoint."""

    def __init__(self) -> None:
        binary = moto_binary()
        if binary is None:
            raise RuntimeError("moto_server is missing: pip install the dev extra (moto[server])")
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_listening(self.proc, self.port, "moto_server", 60)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def uri(self, bucket: str, path: str = "") -> str:
        return f"s3://{bucket}/{path}?endpoint_override={self.endpoint}&scheme=http&allow_bucket_creation=true"

    def filesystem(self):
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http", access_key="testing",
                                 secret_key="testing", region="us-east-1", allow_bucket_creation=True)

    def close(self) -> None:
        stop(self.proc)
