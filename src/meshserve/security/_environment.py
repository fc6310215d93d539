"""The environment a runtime process inherits.

A runtime may run a hostile artifact (a pickle runs code while it loads),
and it reads its environment like any file it is handed: whatever the
instance holds in variables must not reach it unless the runtime needs it.
The instance keeps secrets there on purpose (the sealing key, etcd's
password, cloud credentials for pulls), none of which a runtime uses: the
instance pulls artifacts and talks to the store itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["runtime_environment"]

# meshserve's own settings are the instance's, but for the runtime group a
# runtime child reads, and the log level it follows.
_MESHSERVE = re.compile(r"MESHSERVE_(?!RUNTIME__|LOG)")

# Names that carry credentials by convention: AWS_SECRET_ACCESS_KEY,
# AZURE_STORAGE_CONNECTION_STRING, GOOGLE_APPLICATION_CREDENTIALS,
# ETCDCTL_PASSWORD, GITHUB_TOKEN, ...
_SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN(?!IZERS)|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|API_KEY|"
    r"CONNECTION_STRING|SAS|SESSION_KEY|AUTH",
    re.IGNORECASE,
)


# The OTLP exporter's headers carry the collector's credentials
# (OTEL_EXPORTER_OTLP_HEADERS=authorization=...), and its client key is one;
# a runtime traces without them.
_OTLP_CREDENTIAL = re.compile(r"OTEL_EXPORTER_OTLP_(\w+_)?(HEADERS|CLIENT_KEY)$")


def runtime_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables a runtime must not see: meshserve's
    settings other than ``MESHSERVE_RUNTIME__*`` and ``MESHSERVE_LOG*``,
    anything whose name says it holds a credential, and the OTLP exporter's
    headers and client key."""
    return {
        name: value
        for name, value in environ.items()
        if not _MESHSERVE.match(name)
        and not _SECRET_NAME.search(name)
        and not _OTLP_CREDENTIAL.match(name)
    }
