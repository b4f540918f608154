package privacy

import "errors"

// ErrInvalidArgument is wrapped by every error about an argument outside its domain (a negative
// noise multiplier, a sampling rate above 1, an order below 1, ...). Arguments may come from
// configuration files or from tasks received over the network, so they are checked, not trusted.
var ErrInvalidArgument = errors.New("invalid argument")

// ErrBudgetExceeded is returned by [Accountant.ComposeWithin] when composing the mechanism would
// take epsilon above the budget; the accountant is then left unchanged.
var ErrBudgetExceeded = errors.New("privacy budget exceeded")

// ErrTargetUnreachable is returned by [SigmaFor] when no noise multiplier up to [MaxSigma]
// meets the target epsilon.
var ErrTargetUnreachable = errors.New("privacy target unreachable")

// ErrNumerical is wrapped when an accountant's numerics fail to behave (an RDP log-space
// subtraction that would go negative, a series that does not converge, a privacy loss
// distribution that no grid within the memory bound can hold). It indicates inputs far outside
// the range the accountants were validated on.
var ErrNumerical = errors.New("numerical failure in the privacy accountant")
