# %% [markdown]
# # The paper's claims, checked on these zoos
#
# Each qualitative claim of the paper's §4, turned into a rule that runs on a zoo's grid cells
# (`phasezoo.claims`; each rule is written out in its docstring and below). ✔ the zoo behaves
# as claimed, ✘ it does not, – the zoo lacks what the claim needs (a phase, a method, a
# domain). The table after the matrix gives the numbers behind every mark.
# Re-run: `phasezoo notebook 06_claims -p zoos '[digits-resnet18]'`.

# %% tags=["parameters"]
zoos = ["digits-resnet18", "digits-vit", "text-gpt", "convection-pinn"]
profile = "mini"
root = "data/zoos"
device = "auto"

# %%
import inspect

import pandas as pd
from IPython.display import Markdown, display

from phasezoo.claims import CLAIMS, check_claims, claims_matrix
from phasezoo.spec import load_spec

pd.set_option("display.max_colwidth", None)
results = check_claims([load_spec(z) for z in zoos], profile, root)
claims_matrix(results)

# %% [markdown]
# ## The rules

# %%
display(Markdown("\n".join(f"- **{c.statement}** (§{c.section}) {inspect.getdoc(c.check)}" for c in CLAIMS)))

# %% [markdown]
# ## The evidence

# %%
results[["section", "claim", "zoo", "status", "evidence"]]
