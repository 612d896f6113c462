-- Evidence sharing (sinks/library/evidence.py): the certificates naming an applicant as a spouse (a
-- marriage registration) or a parent (a birth medical certificate), found by index as its holder is.
CREATE INDEX certificate_spouse_ric ON certificate ((details->>'spouse_ric'));
CREATE INDEX certificate_mother_ric ON certificate ((details->>'mother_ric'));
CREATE INDEX certificate_father_ric ON certificate ((details->>'father_ric'));
