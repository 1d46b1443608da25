"""Shared by the tests that measure a fresh process's resident memory: the text of a ``status(field)`` function
that reads ``/proc/self/status`` (bytes), prepended to the scripts those tests run with ``python -c``."""

STATUS_FUNCTION = '''
def status(field):
    """A /proc/self/status field in bytes: VmRSS (resident now), VmHWM (peak resident)."""
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise KeyError(field)
'''
