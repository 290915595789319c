"""Commands that are not Hydra jobs (argparse): each module has `main(args) -> exit code`.

`failure_exit` is how every command (and the CLI) ends on a failure: one line on stderr and the
exit code of the failure policy (runtime/failures.py).
"""

from __future__ import annotations

import sys

from trainpipe.config.secrets import mask_passwords
from trainpipe.errors import JobFailed, UserError
from trainpipe.runtime.failures import Interrupted, classify

# what a command reports in one line; anything else is a bug and keeps its traceback
EXPECTED_FAILURES = (UserError, JobFailed, Interrupted, KeyboardInterrupt)


def failure_exit(err: BaseException) -> int:
    """Print `err` as one line (`trainpipe: …`) and return its exit code."""
    outcome = classify(err)
    message = err if isinstance(err, (UserError, JobFailed)) else outcome.reason
    # a message may quote an override (data.uri=postgresql://user:password@…): masked
    print(f"trainpipe: {mask_passwords(str(message))}", file=sys.stderr)
    return outcome.exit_code
