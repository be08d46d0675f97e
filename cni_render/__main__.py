"""``python -m cni_render``: the cni-render executable (plugin or operator CLI)."""

import sys

from cni_render.entry import plugin_main

sys.exit(plugin_main())
