"""Speed 2: the event-level gait machine (a few events per stride, ``transitions``). Does not
import the kernel or the gate."""
