"""treeloop: an LLM improves itself by search (ηMCTS over reasoning steps), critics and fine-tuning."""

from __future__ import annotations

__version__ = "0.1.0"
