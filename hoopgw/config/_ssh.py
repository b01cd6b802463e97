"""The ``[ssh]`` block: the gateway's SSH host key, recording cap, certificates and command classes."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, Field, field_validator
from pydantic_core import PydanticCustomError

from hoopgw.config._types import MODEL_CONFIG, ConfigPath, Seconds
from hoopgw.policy._classes import PG_CLASSES

#: SSH classes (DESIGN.md "Policy semantics"); each also takes a glob: ``exec:GLOB`` and so on.
SSH_CLASSES = ("shell", "exec", "file-read", "file-write", "forward")
#: The SSH classes that take a glob after a colon.
GLOB_PREFIXES = ("exec:", "file-read:", "file-write:", "forward:")
#: Class names a command class may not take.
BUILTIN_CLASSES = frozenset({*PG_CLASSES, *SSH_CLASSES, "*"})
COMMAND_CLASS_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")

# Globs are matched against each simple command, words joined by single spaces and the program reduced
# to its basename (hoopgw.policy._ssh.split_command), redirections at the end, short option bundles also
# split (``rm -vrf`` is also ``rm -v -r -f``), and against the whole command string. ``*`` crosses spaces
# and ``/``. GNU options may be abbreviated: ``rm --r`` is ``rm --recursive``.
_RM = ("rm -[rR]*", "rm * -[rR]*", "rm -f[rR]*", "rm * -f[rR]*", "rm --r*", "rm * --r*")
_DISKS = ("sd", "hd", "vd", "xvd", "nvme", "mmcblk", "dm-", "md", "mapper/")
#: The built-in command classes (a ``[ssh] command_classes`` entry of the same name replaces one).
DEFAULT_COMMAND_CLASSES: Mapping[str, tuple[str, ...]] = {
    "destructive": (
        *_RM,
        "find * -delete*",
        "find * -exec rm *",
        "find * -execdir rm *",
        "mkfs*",
        "mke2fs *",
        "mkswap *",
        "dd *of=/dev/*",
        "shred *",
        "wipefs *",
        "blkdiscard *",
        "truncate -s 0 *",
        "truncate -s0 *",
        "truncate * -s 0 *",
        "truncate --size=0 *",
        "truncate --size 0 *",
        *(f"*> /dev/{disk}*" for disk in _DISKS),
        "fdisk *",
        "sfdisk *",
        "parted *",
        "crontab -r*",
    ),
    "power": (
        "shutdown",
        "shutdown *",
        "reboot",
        "reboot *",
        "halt",
        "halt *",
        "poweroff",
        "poweroff *",
        "init 0",
        "init 6",
        "telinit 0",
        "telinit 6",
        "systemctl poweroff*",
        "systemctl reboot*",
        "systemctl halt*",
        "systemctl kexec*",
        "systemctl * poweroff*",
        "systemctl * reboot*",
        "systemctl * halt*",
    ),
    "packages": (
        "apt *",
        "apt-get *",
        "aptitude *",
        "dpkg -i*",
        "dpkg -r*",
        "dpkg -P*",
        "dpkg --install*",
        "dpkg --remove*",
        "dpkg --purge*",
        "dpkg * -i*",
        "dpkg * -r*",
        "dpkg * -P*",
        "dpkg * --install*",
        "dpkg * --remove*",
        "dpkg * --purge*",
        "yum *",
        "dnf *",
        "zypper *",
        "pacman -S*",
        "pacman -R*",
        "pacman -U*",
        "rpm -i*",
        "rpm -e*",
        "rpm -U*",
        "rpm -F*",
        "rpm --install*",
        "rpm --erase*",
        "rpm --upgrade*",
        "rpm * -i*",
        "rpm * -e*",
        "rpm * -U*",
        "apk add*",
        "apk del*",
        "apk * add*",
        "apk * del*",
        "pip install*",
        "pip uninstall*",
        "pip3 install*",
        "pip3 uninstall*",
        "pip * install*",
        "pip3 * install*",
        "python* -m pip install*",
        "python* -m pip uninstall*",
        "npm install -g*",
        "npm i -g*",
        "npm install * -g*",
        "npm i * -g*",
        "npm install --global*",
        "npm install * --global*",
        "npm uninstall -g*",
        "snap install*",
        "snap remove*",
        "brew install*",
        "brew uninstall*",
        "brew remove*",
    ),
}


def _command_classes(value: object) -> object:
    if not isinstance(value, dict):
        return value
    out: dict[str, tuple[str, ...]] = dict(DEFAULT_COMMAND_CLASSES)
    for name, globs in value.items():
        if not isinstance(name, str) or not COMMAND_CLASS_NAME.match(name):
            raise PydanticCustomError(
                "command_class",
                "command class name {name} must be lowercase letters, digits and '-', starting with a letter",
                {"name": repr(name)},
            )
        if name in BUILTIN_CLASSES:
            raise PydanticCustomError(
                "command_class",
                "command class name {name} is a built-in policy class; choose another name",
                {"name": repr(name)},
            )
        if isinstance(globs, str):
            globs = (globs,)
        if not isinstance(globs, list | tuple) or not all(isinstance(g, str) and g for g in globs):
            raise PydanticCustomError(
                "command_class",
                'command class {name} must be a list of command globs like ["rm -rf *"]',
                {"name": repr(name)},
            )
        out[name] = tuple(globs)
    return out


class SshConfig(BaseModel):
    """``[ssh]``: settings shared by every ``type = "ssh"`` connection."""

    model_config = MODEL_CONFIG

    #: the gateway's own host key (OpenSSH private key file); None: ``data_dir/ssh_host_ed25519_key``,
    #: generated on first run
    host_key: ConfigPath | None = None
    #: terminal output recorded per session (after masking); past it the recording notes the truncation.
    #: 0 records no output at all. A connection's ``record_max_bytes`` overrides it.
    record_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    #: lifetime of the user certificates ``hoopgw login --ssh`` gets (at most 7 days)
    certificate_ttl: Seconds = Field(default=8 * 3600.0, le=7 * 86400)
    #: named command classes for policies (``deny = ["destructive"]``): shell globs matched against each
    #: simple command of an exec request. An entry replaces the built-in class of the same name
    #: (``destructive``, ``power``, ``packages``); other names add classes.
    command_classes: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_COMMAND_CLASSES))
    #: output the streaming masker holds back (it may be the start of a card number split across reads)
    #: is masked as far as it can be judged and shown once no more output arrives for this long
    idle_flush: Seconds = Field(default=0.05, le=5.0)
    #: environment variables a client may send (``SendEnv``/``SetEnv``) that go on to the target, as
    #: globs; any other is dropped and its name recorded (``BASH_ENV``, ``LD_PRELOAD`` and friends change
    #: what an allowed command does). ``HOOP_PROMPT_ID`` is always read by the gateway itself.
    accept_env: tuple[str, ...] = ("LANG", "LC_*", "TZ", "HOOP_PROMPT_ID")

    @field_validator("command_classes", mode="before")
    @classmethod
    def _merge_defaults(cls, value: object) -> object:
        return _command_classes(value)
