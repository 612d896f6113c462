-- The coded entities' candidates (house, certificate, relationship, social_insurance) are consumed by the
-- merge stage directly from now on (no resolve hop): the merge group goes on from where the resolve group
-- stopped on those topics. (Stop the stages, migrate, start them: `kintsmesh stack up` does it in that order.)
UPDATE consumer_offset SET group_id = 'kintsmesh-merge'
 WHERE group_id = 'kintsmesh-resolve'
   AND topic IN ('gldm.house.candidates', 'gldm.certificate.candidates', 'gldm.relationship.candidates',
                 'gldm.social_insurance.candidates');
