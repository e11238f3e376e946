"""The full-softmax loss from its definition, in plain autograd: what the hand-written one must match."""

import torch


def candidate_cross_entropy(logits, targets, hidden, label_smoothing, smoothing_weights=None):
    """Mean over rows of the cross-entropy over each row's candidates: every catalogue movie but
    the row's ``hidden`` ones ({(row, movie)}), with ``label_smoothing`` spread over the candidates
    (evenly, or in proportion to ``smoothing_weights``, one per column)."""
    losses = []
    for row in range(len(targets)):
        candidates = [m for m in range(logits.shape[1]) if (row, m) not in hidden]
        target = candidates.index(int(targets[row]))
        row_logits = logits[row, candidates]
        if smoothing_weights is None:
            losses.append(
                torch.nn.functional.cross_entropy(
                    row_logits.unsqueeze(0), torch.tensor([target]), label_smoothing=label_smoothing
                )
            )
            continue
        weights = smoothing_weights[candidates]
        distribution = label_smoothing * weights / weights.sum()
        distribution[target] += 1 - label_smoothing
        losses.append(-(distribution * torch.log_softmax(row_logits, 0)).sum())
    return torch.stack(losses).mean()


def shared_candidates_not_offered(candidate_idx, n_rows, hidden):
    """{(row, column)} a row may not pick among columns shared by the batch (row i's positive is column
    i): the other columns holding its positive movie (accidental hits) and those holding one of its
    ``hidden`` movies ({(row, movie)})."""
    movies = candidate_idx.tolist()
    return {
        (row, column)
        for row in range(n_rows)
        for column, movie in enumerate(movies)
        if column != row and (movie == movies[row] or (row, movie) in hidden)
    }
