"""Entry point: ``python3 -m vcprobe <command> '<json arguments>'`` prints one JSON object.

Exit status 0 means the observation was made (whatever it shows); 2 means the probe
could not observe (bad arguments, no access): the host reports that as a harness error.
"""

import json
import sys
import traceback

from . import commands


def main(argv):
    if len(argv) < 2 or argv[1] not in commands.COMMANDS:
        print(json.dumps({"error": f"usage: vcprobe <{'|'.join(commands.COMMANDS)}> [json]"}))
        return 2
    args = json.loads(argv[2]) if len(argv) > 2 else {}
    try:
        result = commands.COMMANDS[argv[1]](**args)
    except Exception as e:  # an observation that could not be made: report, don't guess
        print(json.dumps({"error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}))
        return 2
    print(json.dumps(result))
    return 0


sys.exit(main(sys.argv))
