"""A node's configuration is checked when it loads: a mistake is one line naming the key, not a traceback
when the node first binds or dials (an API port of 99999 raised OverflowError from bind)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from isthmus.errors import ConfigError
from isthmus.node.config import load_node_config
from tests.node_helpers import federation


def _with(path: Path, **changes) -> Path:
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        *where, last = key.split("__")
        node = config
        for part in where:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("key, value, message", [
    ("api__listen", "127.0.0.1:99999", "api.listen must be host:port with a port from 1 to 65535, got "
                                       "'127.0.0.1:99999'"),
    ("listen", "127.0.0.1:0", "listen must be host:port with a port from 1 to 65535"),
    ("polcy", {}, "unknown option 'polcy' (did you mean 'policy'?)"),
])
def test_a_mistake_in_the_node_configuration_is_named(tmp_path, key, value, message):
    configs = federation(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_node_config(_with(configs["guest"], **{key: value}))


def test_a_member_address_with_a_port_over_65535_is_named(tmp_path):
    configs = federation(tmp_path)
    members_file = configs["guest"].parent / yaml.safe_load(configs["guest"].read_text())["federation"]
    members = yaml.safe_load(members_file.read_text())
    members["members"]["host"] = "127.0.0.1:99999"
    members_file.write_text(yaml.safe_dump(members))
    with pytest.raises(ConfigError, match="member 'host': address must be host:port with a port from 1 to 65535"):
        load_node_config(configs["guest"])
