"""Fixed messages of the services that people meet on console pages, marked so the catalogues translate them.

A page passes a service's message through gettext: one listed here is shown translated, any other as it is.
"""

from __future__ import annotations

N_ = str

SERVICE_MESSAGES = (
    N_("wrong username or password"),
    N_("account disabled"),
    N_("CSRF token missing or wrong"),
    N_("CSRF token missing or wrong; load the login page again"),
    N_("credentials are required"),
    N_("the login session is unknown, ended or expired; log in again"),
    N_("this session belongs to another user"),
    N_("too many active sessions"),
    N_("the new expiry is in the past"),
    N_("a command session needs a command"),
    N_("single sign-on is not enabled here"),
    N_("this needs an administrator"),
    N_("DSA keys are not accepted: generate an ed25519 key with ssh-keygen -t ed25519"),
    N_("its time ran out"),
    N_("the program finished successfully"),
    N_("the program stopped with an error (exit status 1); its log shows what it printed"),
    N_("the program was not found in the session's image (exit status 127)"),
    N_("out of memory: the kernel killed a process over the session's memory limit"),
)
