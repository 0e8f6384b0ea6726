"""The domain actors: providers, the router and the cascade, and the adapters they call.

The domain stands on the kernel, and the kernel lives inside the `runtime` package, whose
public face imports this one. Importing the kernel here, before any domain module, loads the
whole `runtime` package first, so `import actors.cascade` in a fresh interpreter finds every
module it needs complete, whichever of the two packages a program imports first.
"""

import runtime.kernel  # noqa: F401
