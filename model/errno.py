"""Negative errno values used by the model and the trace format."""

EINTR = -4
EIO = -5
EAGAIN = -11
ENOMEM = -12
EFAULT = -14
ENOTBLK = -15
EBUSY = -16
EINVAL = -22
EOPNOTSUPP = -95
EIOCBQUEUED = -529

ERRNO_NAMES = {
    EINTR: "EINTR",
    EIO: "EIO",
    EAGAIN: "EAGAIN",
    ENOMEM: "ENOMEM",
    EFAULT: "EFAULT",
    ENOTBLK: "ENOTBLK",
    EBUSY: "EBUSY",
    EINVAL: "EINVAL",
    EOPNOTSUPP: "EOPNOTSUPP",
    EIOCBQUEUED: "EIOCBQUEUED",
}
