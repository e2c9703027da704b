"""Adapters that plug dimgen encoders (tokenizers) into other libraries' generators.

- :mod:`dimgen.integrations.diffusers`: codes as the conditioning of a Hugging Face
  ``diffusers`` ``UNet2DModel`` (needs the optional extra ``dimgen[diffusers]``).

Nothing is imported here, so ``import dimgen.integrations`` never needs an optional dependency.
"""

__all__: list[str] = []
