# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The paper's claims, checked on these zoos
#
# Each qualitative claim of the paper's §4, turned into a rule that runs on a zoo's grid cells
# (`phasezoo.analysis.claims`; each rule is written out in its docstring and below). Each rule computes a
# signed margin (positive: the claim holds) and its 90% bootstrap interval over the zoo's grid
# (seeds resampled within cells; for comparisons of phases, cells within phases too). ✔ the
# interval lies above 0, ✘ below, ? it straddles 0 (inconclusive), – the zoo lacks what the
# claim needs (a phase, a method, a domain). Each cell gives the margin and its interval and
# links to the page whose figure or table shows the evidence (hover: the rule's evidence). The
# table after the matrix gives the numbers behind every mark.

# %% tags=["parameters"]
zoos = ["digits-resnet18", "digits-vit", "text-gpt", "convection-pinn"]
profile = "mini"
root = "data/zoos"

# %%
import inspect

import pandas as pd
from IPython.display import HTML, Markdown, display

from phasezoo.analysis.claims import CLAIMS, check_claims, claims_matrix_html, plain_doc
from phasezoo.publish.book import zoo_slug
from phasezoo.spec import load_spec

pd.set_option("display.max_colwidth", None)
results = check_claims([load_spec(z) for z in zoos], profile, root)
display(HTML(claims_matrix_html(results, {load_spec(z).name: zoo_slug(z) for z in zoos})))

# %% [markdown]
# ## The rules
#
# Each rule: the paper's statement in our words, where the paper makes it (section and the
# figures that show it), and how the rule turns it into a signed margin.

# %%
display(Markdown("\n".join(f"- **{c.statement}** (§{c.section}; {c.figures}) {plain_doc(inspect.getdoc(c.check))}"
                            for c in CLAIMS)))

# %% [markdown]
# ## The evidence

# %%
results[["section", "figures", "claim", "zoo", "status", "margin", "ci_low", "ci_high", "evidence"]].round(4)
