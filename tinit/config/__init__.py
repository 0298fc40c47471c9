"""The config file: its model, its loader and its normalized document.

``model`` holds the frozen values the rest of tinit trusts, ``loader`` makes
them from a services.yaml and reports every mistake in it, ``document`` writes
them back out for ``tinit check``. The names below are the ones the rest of
tinit imports. Importing this package imports neither yaml nor trio: yaml is
imported when a file is read.
"""

from tinit.config._units import parse_duration, parse_env_file, parse_signal, parse_size
from tinit.config.document import to_document
from tinit.config.loader import load_config, parse_config
from tinit.config.model import (
    Backoff,
    Capabilities,
    Config,
    ExecProbe,
    HttpProbe,
    Limits,
    LogRotation,
    Namespaces,
    NotifyFdProbe,
    Probe,
    ProbeSchedule,
    Schedule,
    SdNotifyProbe,
    Service,
    Settings,
    TcpProbe,
)

__all__ = [
    "Backoff",
    "Capabilities",
    "Config",
    "ExecProbe",
    "HttpProbe",
    "Limits",
    "LogRotation",
    "Namespaces",
    "NotifyFdProbe",
    "Probe",
    "ProbeSchedule",
    "Schedule",
    "SdNotifyProbe",
    "Service",
    "Settings",
    "TcpProbe",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_env_file",
    "parse_signal",
    "parse_size",
    "to_document",
]
