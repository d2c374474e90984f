"""ECPO: SGPT warm-up, forward expectation confirmation, backward rewriting, turn-level DPO.

``loop`` holds the recipe's configs, the stages and the data each stage makes from transcripts;
``expert`` the expert agent whose successful dialogues SGPT learns from. See
:mod:`llmrec.finetune.ecpo.loop` for the stages and their artifacts.
"""

from llmrec.finetune.ecpo.expert import ExpertConfig, ScriptedExpert
from llmrec.finetune.ecpo.loop import (AGENTS, STAGES, Ecpo, EcpoConfig, EcpoEvalConfig,
                                       RewriteConfig, SgptConfig, check_rewrite, forward_log,
                                       rewrite_candidates, run_ecpo, sgpt_rows)

__all__ = ["AGENTS", "STAGES", "Ecpo", "EcpoConfig", "EcpoEvalConfig", "ExpertConfig",
           "RewriteConfig", "ScriptedExpert", "SgptConfig", "check_rewrite", "forward_log",
           "rewrite_candidates", "run_ecpo", "sgpt_rows"]
