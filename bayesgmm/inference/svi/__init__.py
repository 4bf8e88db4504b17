"""Stochastic variational inference, in small pieces.

``config`` (settings groups, guides, optimizer), ``objective`` (the ELBO and Rényi bound),
``data`` (the rows each step sees), ``program`` (the compiled start, chunk and draws),
``cache`` (programs per configuration), ``init`` (the guides' start), ``loop`` (the chunks of
steps), ``draws`` (draws from the guide, importance ratios) and ``fit`` (``fit_svi``).
"""
