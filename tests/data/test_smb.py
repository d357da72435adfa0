"""The SMB share of the storage root: Debian's smbd serving `beamhub data smb-config`'s share shows a proposal's
files to its members only, never takes a write, and refuses a removed member at once, as the web and Jupyter do."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from beamhub.config import Settings
from beamhub.data.access import Caller, may_read
from beamhub.data.acl import AccessList, set_tree_acl
from beamhub.data.browsing.smb import share_config, smb_conf
from beamhub.errors import Invalid
from helpers.http import free_port
from helpers.waiting import wait_for_port

SHARE = "beamlinefs"
DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
SECRET = b"proton beam at 6 GeV\n"
STATE_DIRS = ("private", "lock", "state", "cache", "pid", "ncalrpc", "binddns")


def settings(storage_root: Path) -> Settings:
    return Settings(storage_root=storage_root, windows_domain_sid=DOMAIN_SID, idmap_range_low=20000,
                    idmap_range_high=39999, uid_min=20000, uid_max=29999, gid_min=30000, gid_max=39999)


def test_testparm_accepts_the_whole_smb_conf(tmp_path: Path) -> None:
    testparm = shutil.which("testparm")
    if testparm is None:
        pytest.skip("testparm not found: install Debian's samba-common-bin (scripts/install.sh)")
    conf = tmp_path / "smb.conf"
    conf.write_text(smb_conf(settings(Path("/beamlinefs"))))
    checked = subprocess.run([testparm, "-s", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "warning" not in checked.stderr.lower() and "error" not in checked.stderr.lower(), checked.stderr
    share = checked.stdout.split(f"[{SHARE}]")[1]
    for line in ("path = /beamlinefs", "hide unreadable = Yes", "oplocks = No"):
        assert line in share, checked.stdout
    for bypass in ("force user", "force group", "admin users", "write list", "read only = No",
                   "guest ok = Yes", "wide links = Yes", "vfs objects"):
        assert bypass not in checked.stdout, checked.stdout
    assert "idmap config heps : backend = rid" in checked.stdout


@pytest.mark.parametrize("root", ["/data/%U", "/data/a\nforce user = root", "relative/path"])
def test_a_storage_root_smb_conf_cannot_hold_is_refused(root: str) -> None:
    with pytest.raises(Invalid, match="storage_root"):
        share_config(Settings(storage_root=Path(root)))


def test_a_share_name_that_is_not_a_plain_word_is_refused() -> None:
    with pytest.raises(Invalid, match="share name"):
        share_config(Settings(), share="data]\n[other")


# --- a real smbd ---------------------------------------------------------------------------
@dataclass
class SmbServer:
    port: int
    storage: Path
    passwords: dict[str, str]

    def smbclient(self, user: str, command: str) -> subprocess.CompletedProcess[str]:
        """One new connection as user, running one smbclient command."""
        return subprocess.run(["smbclient", f"//127.0.0.1/{SHARE}", "-p", str(self.port), "-m", "SMB3",
                               "-U", f"{user}%{self.passwords[user]}", "-c", command],
                              capture_output=True, text=True, timeout=30)


def server_globals(state: Path, port: int) -> str:
    """A standalone server on 127.0.0.1 whose every file lives under state; logging to stdout."""
    return f"""[global]
   server role = standalone server
   smb ports = {port}
   interfaces = 127.0.0.1
   bind interfaces only = yes
   disable netbios = yes
   passdb backend = tdbsam:{state}/passdb.tdb
   private dir = {state}/private
   lock directory = {state}/lock
   state directory = {state}/state
   cache directory = {state}/cache
   pid directory = {state}/pid
   ncalrpc dir = {state}/ncalrpc
   binddns dir = {state}/binddns
   load printers = no
   printcap name = /dev/null
   disable spoolss = yes
   map to guest = never
   log level = 1
"""


def add_system_user(name: str, conf: Path, password: str) -> None:
    subprocess.run(["useradd", "--no-create-home", "--user-group", name], check=True, capture_output=True)
    subprocess.run(["smbpasswd", "-c", str(conf), "-s", "-a", name], input=f"{password}\n{password}\n",
                   check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def smb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmbServer]:
    """smbd serving the generated share of a fresh storage root, with two users that have SMB passwords."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates system users and runs smbd, which becomes them")
    if shutil.which("smbd") is None or shutil.which("smbclient") is None:
        pytest.skip("smbd or smbclient not found: install Debian's samba and smbclient (scripts/install.sh)")
    state = tmp_path_factory.mktemp("smbd")
    storage = Path(tempfile.mkdtemp(prefix="beamhub-smb-"))
    storage.chmod(0o755)  # users traverse it; pytest's own tmp dirs are private to root
    for folder in STATE_DIRS:
        (state / folder).mkdir()
    port = free_port()
    conf = state / "smb.conf"
    conf.write_text(server_globals(state, port) + "\n" + smb_conf(settings(storage), SHARE))
    names = [f"smb{secrets.token_hex(3)}" for _ in range(2)]
    passwords = {name: secrets.token_urlsafe(12) for name in names}
    log = state / "smbd.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        for name in names:
            add_system_user(name, conf, passwords[name])
        with log.open("wb") as out:
            process = subprocess.Popen(["smbd", "--foreground", "--no-process-group", "--debug-stdout", "-s",
                                        str(conf)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(port, process, 20, lambda: log.read_text(errors="replace")[-3000:])
        yield SmbServer(port, storage, passwords)
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)  # smbd and the children it forked per connection
            process.wait(timeout=15)
        for name in names:
            subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture
def users(smb: SmbServer) -> tuple[str, str]:
    member, outsider = sorted(smb.passwords)
    return member, outsider


def uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def make_proposal(smb: SmbServer, member: str) -> Path:
    """<tier>/<beamline>/<proposal> owned by root (the DAQ), one file in a scan folder, ACL naming member."""
    proposal = smb.storage / "hot" / "bl01" / f"2024-{secrets.token_hex(3)}"
    (proposal / "scan1").mkdir(parents=True)
    for folder in (smb.storage / "hot", smb.storage / "hot" / "bl01"):
        folder.chmod(0o755)
    (proposal / "scan1" / "frame.txt").write_bytes(SECRET)
    set_tree_acl(proposal, AccessList(users=frozenset({uid(member)}), groups=frozenset()))
    return proposal


def share_path(smb: SmbServer, path: Path) -> str:
    return path.relative_to(smb.storage).as_posix()


def test_a_member_reads_the_file_and_a_non_member_is_denied(smb: SmbServer, users: tuple[str, str]) -> None:
    member, outsider = users
    proposal = make_proposal(smb, member)
    frame = share_path(smb, proposal / "scan1" / "frame.txt")

    got = smb.smbclient(member, f"get {frame} -")
    assert got.returncode == 0, got.stdout + got.stderr
    assert SECRET.decode() in got.stdout

    denied = smb.smbclient(outsider, f"get {frame} -")
    assert denied.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in denied.stdout + denied.stderr
    assert SECRET.decode() not in denied.stdout

    listing = smb.smbclient(outsider, f"ls {share_path(smb, proposal)}/*")
    assert "NT_STATUS_ACCESS_DENIED" in listing.stdout + listing.stderr
    assert "scan1" not in listing.stdout


def test_a_non_member_does_not_even_see_the_proposal_folder(smb: SmbServer, users: tuple[str, str]) -> None:
    member, outsider = users
    proposal = make_proposal(smb, member)
    beamline = share_path(smb, proposal.parent)
    assert proposal.name in smb.smbclient(member, f"ls {beamline}/*").stdout
    seen = smb.smbclient(outsider, f"ls {beamline}/*")
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert proposal.name not in seen.stdout


def run_as(user: str, *command: str) -> subprocess.CompletedProcess[bytes]:
    """A process of the user, with their groups, as their Jupyter kernel runs."""
    return subprocess.run(["setpriv", "--reuid", user, "--regid", user, "--init-groups", *command],
                          capture_output=True, timeout=30)


def test_nobody_writes_through_the_share(smb: SmbServer, users: tuple[str, str], tmp_path: Path) -> None:
    member, _ = users
    proposal = make_proposal(smb, member)
    os.chown(proposal / "scan1", uid(member), -1)  # the file system itself would let the member write here
    assert run_as(member, "touch", str(proposal / "scan1" / "probe")).returncode == 0
    upload = tmp_path / "upload.txt"
    upload.write_text("overwritten")
    put = smb.smbclient(member, f"put {upload} {share_path(smb, proposal / 'scan1' / 'new.txt')}")
    assert put.returncode != 0
    assert "NT_STATUS_ACCESS_DENIED" in put.stdout + put.stderr or "WRITE_PROTECTED" in put.stdout + put.stderr
    assert not (proposal / "scan1" / "new.txt").exists()




def test_removing_a_member_shuts_them_out_of_smb_jupyter_and_the_web_at_once(smb: SmbServer,
                                                                             users: tuple[str, str]) -> None:
    member, _ = users
    proposal = make_proposal(smb, member)
    frame = proposal / "scan1" / "frame.txt"
    caller = Caller(uid=uid(member), gids=frozenset(os.getgrouplist(member, pwd.getpwnam(member).pw_gid)))
    assert SECRET.decode() in smb.smbclient(member, f"get {share_path(smb, frame)} -").stdout
    assert run_as(member, "cat", str(frame)).stdout == SECRET
    assert may_read(frame, caller)

    set_tree_acl(proposal, AccessList(users=frozenset(), groups=frozenset()))

    denied = smb.smbclient(member, f"get {share_path(smb, frame)} -")
    assert "NT_STATUS_ACCESS_DENIED" in denied.stdout + denied.stderr
    assert SECRET.decode() not in denied.stdout
    assert run_as(member, "cat", str(frame)).returncode != 0
    assert not may_read(frame, caller)
