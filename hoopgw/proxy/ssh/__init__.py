"""SSH listener: OpenSSH clients in, a brokered upstream sshd out, with policy, masking and recording."""
