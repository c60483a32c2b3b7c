"""The pause room: the actions a lab takes in a coordinated pause (propose, vote, plan,
make a safety case), checked against the same analysis every node applies."""
